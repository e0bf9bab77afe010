"""The engine's parts on their own: config, optimizer groups, schedules, EMA, loss,
atomic writes, RNG capture, run-directory rules, reports."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from classicnets.engine import LRSchedule, ModelEma, TrainConfig, build_config, resume_config
from classicnets.engine.checkpoint import (atomic_write, capture_rng_state, load_checkpoint, read_weights,
                                           restore_rng_state, save_checkpoint, save_weights)
from classicnets.engine.split_scores import evaluate
from classicnets.engine.optim import build_optimizer, training_loss
from classicnets.engine.transfer import param_groups
from classicnets.engine.reports import curves_figure, plot_confusion_matrix, train_loss_terms
from classicnets.engine.rundir import clear_run_files, prepare_run_dir
from classicnets.errors import UserError
from classicnets.models import GoogLeNetOutput, create_model


def config(**values) -> TrainConfig:
    return build_config(None, {"model": "googlenet", **values})


# ----------------------------------------------------------------------------- config


def test_recipe_values_are_checked_and_coerced(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: vgg11\nlr: 1e-3\nepochs: 4\n")  # PyYAML reads 1e-3 as a string
    assert build_config(recipe, {}).lr == 0.001
    recipe.write_text("model: vgg11\nlearning_rate: 0.1\n")
    with pytest.raises(UserError, match="unknown setting.*learning_rate"):
        build_config(recipe, {})
    recipe.write_text("model: vgg11\nepochs: many\n")
    with pytest.raises(UserError, match="epochs must be an integer"):
        build_config(recipe, {})
    recipe.write_text("model: vgg11\naugment: {rotate: 10}\n")
    with pytest.raises(UserError, match="augment has unknown key"):
        build_config(recipe, {})
    recipe.write_text("- just\n- a list\n")
    with pytest.raises(UserError, match="must be a mapping"):
        build_config(recipe, {})


@pytest.mark.parametrize("values, message", [
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"batch_size": -3}, "batch_size must be a positive integer"),
    ({"lr": 0.0}, "lr must be a positive number"),
    ({"scheduler": "linear"}, "unknown scheduler 'linear'"),
    ({"label_smoothing": 1.5}, "label_smoothing must be in"),
    ({"ema_decay": 1.0}, "ema_decay must be in"),
    ({"warmup_epochs": -1}, "warmup_epochs must be zero or more"),
    ({"model": None}, "no model given"),
    ({"image_size": 100_000}, "image_size must be at most 4,096"),
    ({"batch_size": 10**20}, "batch_size must be at most 65,536"),
    ({"eval_batch_size": 70_000}, "eval_batch_size must be at most 65,536"),
    ({"init_from": ""}, "init_from must not be an empty text"),
    ({"data_dir": "  ", "manifest": ""}, "data_dir, manifest must not be an empty text"),
])
def test_impossible_settings_are_refused(values, message):
    with pytest.raises(UserError, match=message):
        config(**values)


def test_photo_datasets_take_their_own_defaults_where_nothing_is_given(tmp_path):
    from classicnets.engine.config import PHOTO_DEFAULTS
    from classicnets.data.photo_augment import SMALL_IMAGE, SMALL_IMAGE_AUGMENT

    small = config(dataset="cats-vs-dogs", image_size=SMALL_IMAGE)
    assert {name: getattr(small, name) for name in PHOTO_DEFAULTS} == PHOTO_DEFAULTS
    assert small.optimizer == "adamw" and small.scheduler == "onecycle"
    for name, value in SMALL_IMAGE_AUGMENT.items():
        assert small.augment[name] == (list(value) if isinstance(value, tuple) else value)
    large = config(dataset=f"folder:{tmp_path}", image_size=SMALL_IMAGE + 1)
    assert large.augment["scale"] == [0.25, 1.0] and large.augment["brightness"] == 0.4  # the paper's
    assert large.optimizer == "adamw"

    # Given settings win; an optimizer given brings the built-in lr and weight decay, not AdamW's.
    recipe = tmp_path / "sgd.yaml"
    recipe.write_text("optimizer: sgd\naugment: {hflip: false}\n")
    sgd = build_config(recipe, {"model": "googlenet", "dataset": "cats-vs-dogs", "image_size": 32,
                                "label_smoothing": 0.0})
    assert (sgd.optimizer, sgd.lr, sgd.weight_decay) == ("sgd", TrainConfig.lr, TrainConfig.weight_decay)
    assert sgd.label_smoothing == 0.0 and sgd.scheduler == "onecycle"
    assert sgd.augment["hflip"] is False and sgd.augment["scale"] == list(SMALL_IMAGE_AUGMENT["scale"])
    assert config(dataset="cats-vs-dogs", optimizer="adamw").lr == PHOTO_DEFAULTS["lr"]

    # Fashion-MNIST keeps the built-in defaults.
    grey = config()
    assert (grey.optimizer, grey.lr, grey.scheduler, grey.label_smoothing) == ("sgd", 0.01, "cosine", 0.0)


def test_train_help_shows_the_photo_defaults(capsys):
    from classicnets.cli.main import main
    from classicnets.engine.config import PHOTO_DEFAULTS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "photos: adamw" in text and f"photos: {PHOTO_DEFAULTS['lr']:g}" in text
    assert "photo defaults: a photo dataset (cats-vs-dogs, cifar10, folder:PATH, stl10)" in text
    assert "at 64 px or less scale [0.5, 1.0]" in text


def test_resume_allows_raising_epochs_only(tmp_path):
    saved = config(epochs=4, lr=0.1, out=str(tmp_path))
    saved.save(tmp_path / "config.yaml")
    assert resume_config(tmp_path, {"epochs": 6, "device": "cpu"}).epochs == 6
    assert resume_config(tmp_path, {"lr": 0.1}).lr == 0.1  # repeating the saved value is fine
    with pytest.raises(UserError, match="only raise --epochs"):
        resume_config(tmp_path, {"epochs": 3})
    with pytest.raises(UserError, match="conflicts with the run's saved optimizer"):
        resume_config(tmp_path, {"optimizer": "adam"})
    with pytest.raises(UserError, match="conflicts with --resume"):
        resume_config(tmp_path, {"out": str(tmp_path / "elsewhere")})
    with pytest.raises(UserError, match="config.yaml does not exist"):
        resume_config(tmp_path / "nothing", {})


# ----------------------------------------------------------------------------- optimisation


def test_weight_decay_skips_biases_and_norm_parameters():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, no_decay = param_groups(model, backbone_lr=0.1, head_lr=0.1, weight_decay=5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert [tuple(p.shape) for p in decay["params"]] == [(4, 1, 3, 3), (2, 4)]
    assert [tuple(p.shape) for p in no_decay["params"]] == [(4,), (4,), (4,), (2,)]
    optimizer = build_optimizer(model, config(optimizer="adamw", weight_decay=0.1), torch.device("cpu"))
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    sgd = build_optimizer(model, config(), torch.device("cpu"))
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["momentum"] == 0.9


def schedule_for(**values) -> LRSchedule:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    return LRSchedule(optimizer, config(**values), steps_per_epoch=10)


def test_cosine_with_warmup():
    schedule = schedule_for(scheduler="cosine", lr=0.1, epochs=10, warmup_epochs=2, warmup_start_factor=0.1)
    assert schedule.lr_at(0) == pytest.approx(0.01)
    assert schedule.lr_at(10) == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))  # halfway up
    assert schedule.lr_at(20) == pytest.approx(0.1)  # the peak, right after warm-up
    assert schedule.lr_at(60) == pytest.approx(0.05)  # halfway down the cosine
    assert schedule.lr_at(100) == pytest.approx(0.0, abs=1e-12)
    lrs = [schedule.step() for _ in range(100)]
    assert schedule.optimizer.param_groups[0]["lr"] == lrs[-1]
    assert lrs.index(max(lrs)) == 20


def test_onecycle_rises_over_30_percent_then_falls_linearly():
    schedule = schedule_for(scheduler="onecycle", lr=0.4, epochs=10, min_lr_factor=0.01)
    assert schedule.warmup_steps == 30
    assert schedule.lr_at(0) == pytest.approx(0.4 * 0.04)
    assert schedule.lr_at(30) == pytest.approx(0.4)
    assert schedule.lr_at(65) == pytest.approx(0.4 * (1 - 0.99 * 0.5))
    assert schedule.lr_at(100) == pytest.approx(0.004)


def test_step_schedule():
    schedule = schedule_for(scheduler="step", lr=1.0, epochs=10, step_epochs=3, step_gamma=0.5)
    assert [schedule.lr_at(e * 10) for e in (0, 2, 3, 6, 9)] == [1.0, 1.0, 0.5, 0.25, 0.125]


def test_plateau_divides_by_ten_when_validation_stalls_at_most_max_times():
    schedule = schedule_for(scheduler="plateau", lr=0.01, plateau_patience=2, plateau_max_reductions=2)
    history = [0.5, 0.6, 0.6, 0.59, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    lrs = []
    for accuracy in history:
        schedule.end_epoch(accuracy)
        lrs.append(schedule.lr_at(schedule.steps_done))
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.0001, 0.0001, 0.0001, 0.0001, 0.0001])
    restored = schedule_for(scheduler="plateau", lr=0.01, plateau_patience=2, plateau_max_reductions=2)
    restored.load_state_dict(schedule.state_dict())
    assert restored.lr_at(0) == schedule.lr_at(0) and restored.reductions == 2


def test_googlenet_aux_losses_weigh_0_3():
    criterion = nn.CrossEntropyLoss()
    labels = torch.tensor([0, 1])
    logits, aux1, aux2 = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)
    loss, main = training_loss(GoogLeNetOutput(logits, aux1, aux2), labels, criterion, 0.3)
    expected = criterion(logits, labels) + 0.3 * (criterion(aux1, labels) + criterion(aux2, labels))
    assert torch.allclose(loss, expected) and main is logits
    plain_loss, plain = training_loss(logits, labels, criterion, 0.3)
    assert torch.allclose(plain_loss, criterion(logits, labels)) and plain is logits


def test_ema_follows_the_weights():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ModelEma(model, decay=0.9)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked += 5
    ema.update(model)  # the first update uses min(0.9, 2/11)
    weight = 1 - 2 / 11
    assert torch.allclose(ema.module[0].weight, start + weight)
    assert ema.module[1].num_batches_tracked.item() == 5  # integer buffers are copied
    assert not any(p.requires_grad for p in ema.module.parameters())
    for _ in range(200):
        ema.update(model)
    assert torch.allclose(ema.module[0].weight, model[0].weight, atol=1e-6)
    copy = ModelEma(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), decay=0.9)
    copy.load_state_dict(ema.state_dict())
    assert copy.updates == 201 and torch.equal(copy.module[0].weight, ema.module[0].weight)


def test_ema_of_a_model_without_integer_buffers():
    # Plain VGG (no batch norm) has no num_batches_tracked: the recipes vgg16.yaml and
    # vgg16_fast.yaml use EMA with it.
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    ema = ModelEma(model, decay=0.5)
    with torch.no_grad():
        model[3].bias.fill_(1.0)
    ema.update(model)
    assert ema.updates == 1 and torch.all(ema.module[3].bias > 0)


def test_evaluate_counts_and_confusion():
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0], [0, 1.0], [0, 0]]))
        model.bias.zero_()
    images = torch.tensor([[1.0, 0], [0, 1.0], [2.0, 0], [0, 3.0], [1.0, 0]])
    labels = torch.tensor([0, 1, 0, 2, 1])
    batches = [(images[:3], labels[:3]), (images[3:], labels[3:])]  # a last partial batch
    result = evaluate(model, batches, 3, device=torch.device("cpu"))
    assert result.num_samples == 5 and result.accuracy == pytest.approx(3 / 5)
    assert result.confusion.tolist() == [[2, 0, 0], [1, 1, 0], [0, 1, 0]]
    assert result.per_class_accuracy() == pytest.approx([1.0, 0.5, 0.0])
    expected = nn.functional.cross_entropy(model(images), labels).item()
    assert result.loss == pytest.approx(expected)


@pytest.mark.parametrize("frozen_features", [True, False], ids=["head-only", "whole-net"])
def test_default_settings_keep_a_real_vgg_head_stable(frozen_features):
    # At 28 px VGG's last map is 1x1, copied 49 times into the 25088->4096 layer, so every
    # step moves that layer's output 49 times as far as the lr suggests. At the old default
    # lr 0.05 (no warm-up) the README's head-only fine-tune (`--freeze features`) reached a
    # loss of 10^6 within 8 steps and the whole net 10^4; the default is now the VGG paper's 0.01.
    torch.manual_seed(0)
    patterns, labels = torch.randn(10, 1, 28, 28), torch.arange(64) % 10
    model = create_model("vgg11_bn", num_classes=10, in_chans=1)
    if frozen_features:
        model.features.requires_grad_(False)
    optimizer = build_optimizer(model, config(model="vgg11_bn"), torch.device("cpu"))
    losses = []
    for _ in range(8):
        images = patterns[labels] + 0.5 * torch.randn(64, 1, 28, 28)
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert max(losses) < 10, losses  # 6.4 at most now; over 100 from the third step before
    assert losses[-1] < losses[0], losses


# ----------------------------------------------------------------------------- files


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "file.bin"
    atomic_write(target, lambda handle: handle.write(b"old"))

    def torn(handle):
        handle.write(b"ne")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, torn)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_rng_state_round_trip_through_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached Gaussian in Python's state
    save_checkpoint(tmp_path / "c.ckpt", {"rng": capture_rng_state()})
    expected = (random.random(), random.gauss(0, 1), np.random.rand(), np.random.randn(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(load_checkpoint(tmp_path / "c.ckpt")["rng"])  # weights_only=True inside
    again = (random.random(), random.gauss(0, 1), np.random.rand(), np.random.randn(), torch.rand(3))
    assert expected[:4] == again[:4] and torch.equal(expected[4], again[4])


def test_damaged_checkpoint_is_a_user_error(tmp_path):
    (tmp_path / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "last.ckpt")
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_weights_metadata_round_trip(tmp_path):
    state = {"w": torch.arange(6.0).view(2, 3)}
    meta = {"model": "vgg11", "num_classes": 10, "mean": [0.286], "class_names": ["a", "b/c"], "model_kwargs": {}}
    save_weights(tmp_path / "w.safetensors", state, meta)
    tensors, metadata = read_weights(tmp_path / "w.safetensors")
    assert torch.equal(tensors["w"], state["w"])
    assert {k: metadata[k] for k in meta} == meta
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(UserError, match="not a readable safetensors"):
        read_weights(tmp_path / "junk.safetensors")


def test_run_dir_rules(tmp_path):
    fresh = prepare_run_dir(tmp_path / "a" / "b", resume=False, overwrite=False)
    assert fresh.is_dir()
    (fresh / "metrics.csv").write_text("x")
    (fresh / "mine.txt").write_text("keep")
    with pytest.raises(UserError, match="already exists"):
        prepare_run_dir(fresh, resume=False, overwrite=False)
    prepare_run_dir(fresh, resume=False, overwrite=True)  # accepted, but nothing deleted yet (the loop clears
    assert sorted(p.name for p in fresh.iterdir()) == ["metrics.csv", "mine.txt"]  # once the new run sets up)
    clear_run_files(fresh)
    assert sorted(p.name for p in fresh.iterdir()) == ["mine.txt"]
    (fresh / ".last.ckpt.123.tmp").write_bytes(b"torn")
    prepare_run_dir(fresh, resume=True, overwrite=False)
    assert not (fresh / ".last.ckpt.123.tmp").exists()
    with pytest.raises(UserError, match="is a file"):
        prepare_run_dir(fresh / "mine.txt", resume=False, overwrite=False)
    with pytest.raises(UserError, match="cannot resume"):
        prepare_run_dir(tmp_path / "none", resume=True, overwrite=False)


def test_confusion_matrix_figure_is_a_png(tmp_path):
    confusion = torch.tensor([[5, 1], [0, 4]])
    plot_confusion_matrix(tmp_path / "cm.png", confusion, ["cat", "dog"], "test")
    data = (tmp_path / "cm.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_curves_name_only_the_loss_terms_in_use_and_tick_whole_epochs():
    assert train_loss_terms(0.1, 0.3) == ["label smoothing 0.1", "aux heads x 0.3"]
    assert train_loss_terms(0.0, None) == []  # VGG, or GoogLeNet without aux heads
    assert train_loss_terms(0.0, 0.3) == ["aux heads x 0.3"]
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "train_acc": 0.5 + e / 10,
                "val_acc": 0.45 + e / 10} for e in (1, 2, 3)]
    figure = curves_figure(history, "vgg16 on fashion-mnist", train_loss_terms(0.0, None))
    loss_axes, acc_axes = figure.axes
    assert loss_axes.get_title() == ""  # nothing to explain: plain cross-entropy on both sides
    for axes in (loss_axes, acc_axes):
        ticks = [t for t in axes.get_xticks() if 1 <= t <= 3]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    figure = curves_figure(history, "googlenet", train_loss_terms(0.1, 0.3))
    assert figure.axes[0].get_title() == "loss (train: with label smoothing 0.1 and aux heads x 0.3)"


def test_a_recipe_that_is_a_folder_or_binary_is_named_as_such(tmp_path):
    from classicnets.engine.config import load_recipe

    with pytest.raises(UserError, match="is a folder; give a .yaml file"):
        load_recipe(tmp_path)
    binary = tmp_path / "picture.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(UserError, match="is not a text file"):
        load_recipe(binary)


def test_bf16_on_the_cpu_only_where_a_recipe_asks_or_the_cpu_computes_it_natively(monkeypatch):
    from classicnets import device

    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx2"}))  # a laptop's CPU
    default = config(model="vgg11")
    assert default.bf16_on("cuda") and not default.bf16_on("cpu")  # "auto": float32 on this CPU
    asked = config(model="vgg11", cpu_bf16=True, bf16=False)
    assert asked.bf16_on("cpu") and not asked.bf16_on("cuda") and not asked.bf16_on("mps")


def test_evaluate_in_bf16_on_the_cpu():
    torch.manual_seed(0)
    model, dtypes = nn.Linear(4, 3), []
    model.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    batches = [(torch.randn(8, 4), torch.arange(8) % 3)]
    plain = evaluate(model, batches, 3, device=torch.device("cpu"))
    in_bf16 = evaluate(model, batches, 3, device=torch.device("cpu"), bf16=True)
    assert dtypes == [torch.float32, torch.bfloat16]
    assert in_bf16.loss == pytest.approx(plain.loss, rel=0.02) and in_bf16.loss != plain.loss


def test_photo_lr_is_lower_for_fully_connected_layers_over_the_last_map(tmp_path):
    # Asked of the model (its dense_head), never of its name: VGG and AlexNet read a window of
    # their last map with FC layers (7x7, 6x6); GoogLeNet, ResNet and LeNet-5 do not, and a VGG
    # with head_window=1 reads the 512 channels once.
    from classicnets.engine.config import PHOTO_DEFAULTS, PHOTO_FC_HEAD_LR

    for name in ("vgg11_bn", "alexnet"):
        chosen = config(model=name, dataset="cats-vs-dogs")
        assert (chosen.optimizer, chosen.lr) == ("adamw", PHOTO_FC_HEAD_LR), name
    assert config(model="vgg11_bn", model_kwargs={"head_window": 1}, dataset="cats-vs-dogs").lr == PHOTO_DEFAULTS["lr"]
    for name in ("googlenet", "resnet18", "lenet5"):
        assert config(model=name, dataset=f"folder:{tmp_path}").lr == PHOTO_DEFAULTS["lr"], name
    assert config(model="vgg11_bn", dataset="cats-vs-dogs", lr=0.001).lr == 0.001  # given wins
    assert config(model="vgg11_bn", dataset="cats-vs-dogs", optimizer="sgd").lr == TrainConfig.lr
    assert config(model="vgg11_bn").lr == TrainConfig.lr  # Fashion-MNIST: the built-in defaults
    assert config(model="vgg11_bn", model_kwargs={"no_such_option": 1}, dataset="cats-vs-dogs").lr \
        == PHOTO_DEFAULTS["lr"]  # a model that cannot be built is refused later, by train


def test_the_cpu_optimizer_step_is_fused_and_is_nesterov_sgd_with_weight_decay_on_weights_only():
    # One pass per parameter on the CPU (torch's fused kernel); the update is the textbook one:
    # g = grad + wd * w (matrices only), v = g (first step), w -= lr * (g + momentum * v).
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    weight, bias = model.weight.detach().clone(), model.bias.detach().clone()
    optimizer = build_optimizer(model, config(model="vgg11", lr=0.1, momentum=0.9, weight_decay=0.01),
                                torch.device("cpu"))
    assert all(group["fused"] for group in optimizer.param_groups)
    model(torch.ones(1, 3)).sum().backward()
    weight_grad = torch.ones(2, 3) + 0.01 * weight
    bias_grad = torch.ones(2)
    optimizer.step()
    torch.testing.assert_close(model.weight.detach(), weight - 0.1 * (weight_grad + 0.9 * weight_grad))
    torch.testing.assert_close(model.bias.detach(), bias - 0.1 * (bias_grad + 0.9 * bias_grad))
