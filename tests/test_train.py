"""End-to-end runs of the training engine and ``classicnets train`` on the CPU.

Most runs use a tiny synthetic dataset (4 classes of 12x12 grey images, a noisy fixed
template per class) put in place of ``build_data``, built with the data layer's own
batchers, so each run takes seconds. One test trains on real Fashion-MNIST.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from classicnets.cli.main import main
from classicnets.data import AugmentConfig, BatchTransform, DataBundle, DeviceBatcher, channel_mean_std
from classicnets.engine import TrainingDiverged, build_config, load_run, resume_config, train
from classicnets.engine import loop as engine_loop
from classicnets.engine.checkpoint import load_checkpoint
from classicnets.engine.reports import METRIC_COLUMNS
from classicnets.errors import UserError

CLASSES = ["circle", "square", "stripe", "cross"]
NATIVE = 12  # synthetic image side
TIMING_COLUMNS = ("epoch_seconds", "images_per_s")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# googlenet without auxiliary heads is the cheapest model to train here
FAST = ["--model", "googlenet", "--image-size", "16", "--batch-size", "32", "--epochs", "2",
        "--lr", "0.05", "--quiet", "--device", "cpu", "--seed", "3"]


def synthetic_images(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` uint8 images [N, 1, 12, 12]: a fixed template per class plus noise."""
    templates = torch.randint(0, 256, (len(CLASSES), 1, NATIVE, NATIVE), generator=torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % len(CLASSES)
    noise = torch.randint(-60, 61, (count, 1, NATIVE, NATIVE), generator=generator)
    return (templates[labels] + noise).clamp(0, 255).to(torch.uint8), labels


def synthetic_build_data(name, *, data_dir, image_size, batch_size, eval_batch_size, device, seed,
                         val_size=6000, subset=None, augment=None, loader="auto", num_workers=2,
                         download=True, rank=0, world_size=1, **photo_options) -> DataBundle:
    """Stands in for ``classicnets.data.build_data``: 128 train, 64 val, 64 test images."""
    device = torch.device(device)
    augment = AugmentConfig.from_dict(augment) if isinstance(augment, dict) else augment  # as build_data does
    train_images, train_labels = synthetic_images(128 + 64, seed=1)
    test_images, test_labels = synthetic_images(64, seed=2)
    train_idx, val_idx = torch.arange(128), torch.arange(128, 192)
    mean, std = channel_mean_std(train_images[train_idx])

    def batcher(images, labels, indices, train: bool) -> DeviceBatcher:
        transform = BatchTransform(mean, std, image_size, augment if train else None, device)
        return DeviceBatcher(images, labels, indices, batch_size=batch_size if train else eval_batch_size,
                             train=train, transform=transform, device=device, seed=seed)

    return DataBundle(
        train=batcher(train_images, train_labels, train_idx, True),
        val=batcher(train_images, train_labels, val_idx, False),
        test=batcher(test_images, test_labels, torch.arange(64), False),
        num_classes=len(CLASSES), in_chans=1, class_names=list(CLASSES), mean=mean, std=std,
        image_size=image_size, split_sizes={"train": 128, "val": 64, "test": 64})


@pytest.fixture
def synthetic_data(monkeypatch):
    monkeypatch.setattr(engine_loop, "build_data", synthetic_build_data)


def fast_config(out: Path, **changes):
    values = {"model": "googlenet", "model_kwargs": {"aux_logits": False}, "image_size": 16,
              "batch_size": 32, "epochs": 2, "lr": 0.05, "device": "cpu", "seed": 3, "out": str(out),
              "deterministic": True, **changes}
    return build_config(None, values)


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def without_timings(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def assert_same_run(run_a: Path, run_b: Path) -> None:
    """Same metrics (timings aside), same best weights, same final weights and test result."""
    assert without_timings(metric_rows(run_a)) == without_timings(metric_rows(run_b))
    assert_same_tensors(load_file(run_a / "best.safetensors"), load_file(run_b / "best.safetensors"))
    assert_same_tensors(load_checkpoint(run_a / "last.ckpt")["model"], load_checkpoint(run_b / "last.ckpt")["model"])
    summary_a, summary_b = (json.loads((d / "summary.json").read_text()) for d in (run_a, run_b))
    assert summary_a["test_accuracy"] == summary_b["test_accuracy"]
    assert summary_a["test_loss"] == summary_b["test_loss"]


# ----------------------------------------------------------------------------- outputs


def test_the_header_line_says_which_precision_was_chosen_and_why(synthetic_data, tmp_path, capsys, monkeypatch):
    from classicnets import device

    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx", "avx2"}))  # a laptop's CPU
    train(fast_config(tmp_path / "auto", epochs=1), quiet=True)
    header = capsys.readouterr().out.splitlines()[0]
    assert "in float32 (cpu_bf16 auto: this CPU has no native bf16" in header
    train(fast_config(tmp_path / "forced", epochs=1, cpu_bf16=True), quiet=True)
    header = capsys.readouterr().out.splitlines()[0]
    assert "in bf16 autocast (cpu_bf16 true, but this CPU has no native bf16" in header
    assert "expect steps several times slower than in float32" in header


def test_run_writes_every_output(synthetic_data, tmp_path, capsys):
    out = tmp_path / "run"
    config = fast_config(out, model_kwargs={}, ema_decay=0.9, epochs=2)  # aux heads and EMA on
    summary = train(config, quiet=True)

    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved == config.to_dict()
    rows = metric_rows(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert tuple(rows[0]) == METRIC_COLUMNS
    assert all(0 <= float(r["val_acc"]) <= 1 and float(r["images_per_s"]) > 0 for r in rows)
    for png in ("curves.png", "confusion_matrix.png"):
        data = (out / png).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000

    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for key in ("test_accuracy", "test_loss", "best_epoch", "best_val_accuracy", "wall_time_s", "device",
                "torch_version", "git_commit", "train_images_per_s", "per_class_test_accuracy"):
        assert key in on_disk
    assert list(on_disk["per_class_test_accuracy"]) == CLASSES
    assert on_disk["best_val_accuracy"] == max(float(r["val_acc"]) for r in rows)
    assert on_disk["best_epoch"] == 1 + [float(r["val_acc"]) for r in rows].index(on_disk["best_val_accuracy"])
    assert on_disk["ema"] is True and on_disk["test_images"] == 64

    checkpoint = torch.load(out / "last.ckpt", weights_only=True)
    assert checkpoint["progress"]["epoch"] == 2 and checkpoint["ema"]["updates"] == 2 * 4
    printed = capsys.readouterr().out
    assert f"test accuracy: {100 * summary['test_accuracy']:.2f}%" in printed
    assert printed.count("epoch ") >= 2 and "Sandal" not in printed


def test_load_run_round_trip(synthetic_data, tmp_path):
    out = tmp_path / "run"
    summary = train(fast_config(out, epochs=1), quiet=True)
    model, metadata = load_run(out)
    same_model, same_metadata = load_run(out / "best.safetensors")
    assert metadata == same_metadata
    assert metadata["model"] == "googlenet" and metadata["num_classes"] == 4 and metadata["in_chans"] == 1
    assert metadata["image_size"] == 16 and metadata["class_names"] == CLASSES and metadata["epoch"] == 1
    assert len(metadata["mean"]) == len(metadata["std"]) == 1
    assert not model.training

    # The rebuilt network scores the test split exactly as the run reported.
    bundle = synthetic_build_data("x", data_dir=None, image_size=16, batch_size=32, eval_batch_size=64,
                                  device="cpu", seed=3)
    images, labels = next(iter(bundle.test))
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
        assert torch.equal(model(images), same_model(images))
    assert accuracy == pytest.approx(summary["test_accuracy"])

    with pytest.raises(UserError, match="does not exist"):
        load_run(tmp_path / "missing")
    with pytest.raises(UserError, match="no best.safetensors"):
        load_run(tmp_path)


def test_loss_falls_on_real_fashion_mnist(fashion_mnist_dir, tmp_path, monkeypatch):
    # Real data, a 512-image subset; the 10,000 test images are cut to 500 to stay fast.
    real_build_data = engine_loop.build_data

    def smaller_test_split(*args, **kwargs):
        bundle = real_build_data(*args, **kwargs)
        test = bundle.test
        bundle.test = DeviceBatcher(test.images, test.labels, torch.arange(500), batch_size=test.batch_size,
                                    train=False, transform=test.transform, device=test.device, seed=0)
        return bundle

    monkeypatch.setattr(engine_loop, "build_data", smaller_test_split)
    config = fast_config(tmp_path / "run", image_size=28, subset=512, epochs=3, data_dir=str(fashion_mnist_dir),
                         batch_size=64, scheduler="onecycle", lr=0.02)
    summary = train(config, quiet=True)
    rows = metric_rows(tmp_path / "run")
    losses = [float(r["train_loss"]) for r in rows]
    accuracies = [float(r["train_acc"]) for r in rows]
    assert losses[-1] < losses[0] - 0.3  # 2.3 (chance) falls to about 1.7 in 24 steps
    assert accuracies[-1] > accuracies[0] + 0.1
    assert summary["split_sizes"]["train"] == 512 and summary["test_images"] == 500
    assert list(summary["per_class_test_accuracy"])[9] == "Ankle boot"


# ----------------------------------------------------------------------------- faults


def test_crash_while_writing_checkpoint_keeps_previous(synthetic_data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_save = torch.save
    calls = []

    def save_half_then_die(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real_save(obj, handle, *args, **kwargs)
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk pulled out mid-write")

    monkeypatch.setattr(torch, "save", save_half_then_die)
    with pytest.raises(OSError, match="mid-write"):
        train(fast_config(out, epochs=3), quiet=True)
    monkeypatch.setattr(torch, "save", real_save)

    checkpoint = torch.load(out / "last.ckpt", weights_only=True)
    assert checkpoint["progress"]["epoch"] == 1
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert len(metric_rows(out)) == 1


def test_sigkill_during_checkpoint_then_resume_matches_uninterrupted(tmp_path):
    """A real SIGKILL in the middle of writing epoch 2's checkpoint, then --resume.

    With --deterministic on the CPU the resumed run must end with exactly the metrics
    and weights of a run that was never interrupted.
    """
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    script = textwrap.dedent(f"""
        import importlib.util, os, signal, sys, torch
        torch.set_num_threads({torch.get_num_threads()})  # bitwise equality needs the same thread count
        spec = importlib.util.spec_from_file_location("train_tests", {str(Path(__file__))!r})
        tests = importlib.util.module_from_spec(spec); spec.loader.exec_module(tests)
        from classicnets.engine import loop, train
        loop.build_data = tests.synthetic_build_data
        real_save, calls = torch.save, []
        def save_then_kill(obj, handle, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:  # epoch 2: half the bytes, then the plug is pulled
                handle.write(b"PK\\x03\\x04 torn"); handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, handle, *args, **kwargs)
        torch.save = save_then_kill
        train(tests.fast_config({str(killed)!r}, epochs=2), quiet=True)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert load_checkpoint(killed / "last.ckpt")["progress"]["epoch"] == 1
    assert len(metric_rows(killed)) == 1

    engine_loop.build_data, saved_build_data = synthetic_build_data, engine_loop.build_data
    try:
        train(resume_config(killed, {}), resume=True, quiet=True)
        train(fast_config(clean, epochs=2), quiet=True)
    finally:
        engine_loop.build_data = saved_build_data
    assert [int(r["epoch"]) for r in metric_rows(killed)] == [1, 2]
    assert not [p.name for p in killed.iterdir() if p.name.startswith(".")]  # stale temp files cleared
    assert_same_run(killed, clean)


def test_resume_with_more_epochs_matches_longer_run(synthetic_data, tmp_path):
    # "plateau" (no warm-up) does not depend on the planned length, so 1 epoch resumed
    # to 2 must equal 2 epochs in one go.
    short, long = tmp_path / "short", tmp_path / "long"
    train(fast_config(short, epochs=1, scheduler="plateau", lr=0.02), quiet=True)
    train(resume_config(short, {"epochs": 2}), resume=True, quiet=True)
    train(fast_config(long, epochs=2, scheduler="plateau", lr=0.02), quiet=True)
    assert yaml.safe_load((short / "config.yaml").read_text())["epochs"] == 2
    assert_same_run(short, long)


def test_nan_loss_stops_with_exit_3_and_keeps_last_checkpoint(synthetic_data, tmp_path, monkeypatch, capsys):
    real_loss, calls = engine_loop.training_loss, []

    def loss_turns_nan_in_epoch_2(*args, **kwargs):
        calls.append(1)
        loss, logits = real_loss(*args, **kwargs)
        return (loss * float("nan"), logits) if len(calls) > 4 else (loss, logits)  # 4 steps per epoch

    monkeypatch.setattr(engine_loop, "training_loss", loss_turns_nan_in_epoch_2)
    out = tmp_path / "run"
    code = main(["train", *FAST, "--out", str(out), "--epochs", "3"])
    err = capsys.readouterr().err
    assert code == 3
    assert "diverged" in err and "epoch 2" in err and "Traceback" not in err
    assert load_checkpoint(out / "last.ckpt")["progress"]["epoch"] == 1
    assert len(metric_rows(out)) == 1 and (out / "best.safetensors").is_file()


def test_huge_learning_rate_diverges(synthetic_data, tmp_path):
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        train(fast_config(tmp_path / "run", lr=1e6, epochs=1, model_kwargs={"aux_logits": False}), quiet=True)


def test_failed_setup_leaves_no_run_dir(synthetic_data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError, match="model_kwargs .* do not fit googlenet"):
        train(fast_config(out, model_kwargs={"wings": 2}), quiet=True)
    assert not out.exists()


@pytest.mark.parametrize("model, kwargs, reason", [
    ("googlenet_tv", {"transform_input": True}, "needs in_chans=3"),  # a 1-channel dataset
    ("googlenet", {"dropout": 7}, "dropout probability")])
def test_model_kwargs_values_the_network_refuses_are_a_clear_error(synthetic_data, tmp_path, model, kwargs, reason):
    with pytest.raises(UserError, match=f"model_kwargs .* do not fit {model} .*{reason}"):
        train(fast_config(tmp_path / "run", model=model, model_kwargs={"aux_logits": False, **kwargs}), quiet=True)


def test_ctrl_c_says_how_to_resume(synthetic_data, tmp_path, monkeypatch, capsys):
    real_loss, calls = engine_loop.training_loss, []

    def interrupt_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(engine_loop, "training_loss", interrupt_in_epoch_2)
    out = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"classicnets train --resume {out}" in err and "Traceback" not in err
    assert load_checkpoint(out / "last.ckpt")["progress"]["epoch"] == 1


def fill_the_disk_at_checkpoint(monkeypatch, number: int) -> None:
    """The ``number``-th last.ckpt write fails as it does on a full disk: torch.save's zip
    writer raises a RuntimeError while handling the ENOSPC (seen on a full tmpfs)."""
    real_save, calls = engine_loop.save_checkpoint, []

    def save_or_fail(path, state):
        calls.append(1)
        if len(calls) != number:
            return real_save(path, state)
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 61515904 vs 61515792")

    monkeypatch.setattr(engine_loop, "save_checkpoint", save_or_fail)


def test_full_disk_keeps_finished_epochs_and_says_how_to_resume(synthetic_data, tmp_path, monkeypatch, capsys):
    fill_the_disk_at_checkpoint(monkeypatch, 2)
    out = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "the disk is full (No space left on device); finished epochs are saved" in err
    assert err.rstrip().endswith(f"classicnets train --resume {out}")
    assert load_checkpoint(out / "last.ckpt")["progress"]["epoch"] == 1

    monkeypatch.undo()  # room again: the run finishes from where it stopped
    monkeypatch.setattr(engine_loop, "build_data", synthetic_build_data)
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert [row["epoch"] for row in metric_rows(out)] == ["1", "2"]
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2


def test_full_disk_in_the_first_epoch_leaves_nothing(synthetic_data, tmp_path, monkeypatch, capsys):
    fill_the_disk_at_checkpoint(monkeypatch, 1)
    out = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(out)]) == 2
    assert "before the first epoch was saved; free some space and start the run again" in capsys.readouterr().err
    assert not out.exists()


def test_failed_overwrite_keeps_the_previous_results(synthetic_data, tmp_path):
    out = tmp_path / "run"
    train(fast_config(out, epochs=1), quiet=True)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(UserError, match="model_kwargs .* do not fit googlenet"):  # fails while setting up
        train(fast_config(out, model_kwargs={"wings": 2}), overwrite=True, quiet=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_run_stopped_in_its_first_epoch_leaves_nothing(synthetic_data, tmp_path, monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine_loop, "training_loss", interrupt)
    out = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(out)]) == 130
    assert "nothing was saved, so start the run again" in capsys.readouterr().err
    assert not out.exists()  # no config.yaml left to make the next start need --overwrite


def test_default_run_directories_never_collide(synthetic_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    same_second = Path("runs") / "googlenet-fashion-mnist-20260101-000000"
    monkeypatch.setattr("classicnets.engine.rundir.default_run_dir", lambda model, dataset: same_second)
    run_dirs = []
    for _ in range(2):
        config = fast_config(tmp_path, epochs=1)
        config.out = None  # the default name
        run_dirs.append(train(config, quiet=True)["run_dir"])
    assert run_dirs == [str(same_second), f"{same_second}-2"]


def test_resume_with_more_epochs_after_a_kill_before_the_new_test(synthetic_data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(fast_config(out, epochs=1), quiet=True)
    real_plot = engine_loop.plot_confusion_matrix

    def killed_during_the_test(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine_loop, "plot_confusion_matrix", killed_during_the_test)
    with pytest.raises(engine_loop.TrainingInterrupted):
        train(resume_config(out, {"epochs": 2}), resume=True, quiet=True)
    assert not (out / "summary.json").exists()  # the 1-epoch result does not stand for the 2-epoch run
    monkeypatch.setattr(engine_loop, "plot_confusion_matrix", real_plot)
    summary = train(resume_config(out, {}), resume=True, quiet=True)  # only the test was left to do
    assert summary["epochs"] == 2 and json.loads((out / "summary.json").read_text())["epochs"] == 2


def test_resume_refuses_another_number_of_processes(synthetic_data, tmp_path):
    out = tmp_path / "run"
    train(fast_config(out, epochs=1), quiet=True)
    checkpoint = load_checkpoint(out / "last.ckpt")
    assert checkpoint["progress"]["world_size"] == 1
    checkpoint["progress"]["world_size"] = 2  # as if trained by two ranks
    torch.save(checkpoint, out / "last.ckpt")
    with pytest.raises(UserError, match="trained with 2 process\\(es\\); resume it with the same number"):
        train(resume_config(out, {"epochs": 2}), resume=True, quiet=True)


def test_resume_does_not_read_the_init_from_source_again(synthetic_data, tmp_path, monkeypatch):
    source = tmp_path / "source"
    train(fast_config(source, epochs=1), quiet=True)
    out = tmp_path / "run"
    train(fast_config(out, epochs=1, init_from=str(source)), quiet=True)
    (source / "best.safetensors").unlink()  # moved or deleted since
    summary = train(resume_config(out, {"epochs": 2}), resume=True, quiet=True)
    assert summary["epochs"] == 2


def test_images_too_small_for_the_network_are_refused_before_training(synthetic_data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError, match="googlenet_tv cannot run on 8 px images, too small for it"):
        train(fast_config(out, model="googlenet_tv", image_size=8), quiet=True)
    assert not out.exists()


def test_batch_norm_with_one_image_per_batch_is_refused(synthetic_data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError, match="batch norm needs at least 2"):
        train(fast_config(out, batch_size=1), quiet=True)
    assert not out.exists()


FASHION_RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes" / "fashion_mnist").glob("*.yaml"))


@pytest.mark.parametrize("recipe", FASHION_RECIPES, ids=lambda p: p.stem)
def test_every_fashion_mnist_recipe_trains_a_few_steps(recipe, synthetic_data, tmp_path):
    # The GPU recipes cannot be measured here, but each must at least run its own settings
    # (model, EMA, schedule, augmentation, TTA) end to end, shrunk to the CPU.
    overrides = {"device": "cpu", "epochs": 1, "image_size": 32, "batch_size": 32, "eval_batch_size": 64,
                 "compile": False, "out": str(tmp_path / "run")}
    summary = train(build_config(recipe, overrides), quiet=True)
    assert summary["epochs"] == 1 and 0 <= summary["test_accuracy"] <= 1


# ----------------------------------------------------------------------------- CLI


def test_recipe_then_flags_precedence(synthetic_data, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: googlenet\nmodel_kwargs: {aux_logits: false}\nepochs: 5\nlr: 1e-2\n"
                      "batch_size: 16\nweight_decay: 1.0e-4\naugment: {erasing: 0.5}\n")
    out = tmp_path / "run"
    assert main(["train", "--recipe", str(recipe), "--epochs", "1", "--lr", "0.03", "--image-size", "16",
                 "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["epochs"] == 1 and saved["lr"] == 0.03  # flags win
    assert saved["batch_size"] == 16 and saved["weight_decay"] == 1e-4  # the recipe beats defaults
    assert saved["augment"] == {"crop_padding": 4, "hflip": True, "erasing": 0.5}  # unset keys keep defaults
    assert saved["optimizer"] == "sgd"  # defaults fill the rest
    assert len(metric_rows(out)) == 1


def test_existing_run_dir_is_refused_unless_overwrite(synthetic_data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["train", *FAST, "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    assert main(["train", *FAST, "--epochs", "1", "--out", str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite only replaces run files
    assert f"note: {out} still holds notes.txt from before" in capsys.readouterr().out
    assert len(metric_rows(out)) == 1


@pytest.mark.parametrize("flags, message", [
    (["--model", "vgg17"], "unknown model 'vgg17'"),
    (["--model", "googlenet", "--dataset", "mnist2"], "unknown dataset 'mnist2'"),
    (["--model", "googlenet", "--out", "{file}/run"], "cannot write to output directory"),
    (["--model", "googlenet", "--optimizer", "sgd", "--weight-decay", "-1"], "weight_decay must be zero or more"),
    (["--epochs", "3"], "no model given"),
    (["--resume", "{tmp}/nothing"], "cannot resume"),
    (["--model", "googlenet", "--recipe", "{tmp}/none.yaml"], "recipe"),
])
def test_bad_input_exits_2_with_one_sentence(tmp_path, capsys, flags, message):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    flags = [f.format(file=blocker, tmp=tmp_path) for f in flags]
    assert main(["train", *flags, "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("flag", [["--epochs", "-1"], ["--batch-size", "0"], ["--lr", "nan"],
                                  ["--optimizer", "rmsprop"]])
def test_bad_numbers_are_usage_errors(capsys, flag):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "googlenet", *flag])
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_resume_refuses_conflicting_flags(synthetic_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *FAST, "--epochs", "1", "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out), "--lr", "0.5"]) == 2
    assert "conflicts with the run's saved lr" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--epochs", "1"]) == 2  # nothing left to do
    assert "already finished" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--seed", "3", "--epochs", "2", "--quiet"]) == 0  # same seed: fine
    assert [int(r["epoch"]) for r in metric_rows(out)] == [1, 2]


def test_cli_process_reports_user_errors_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-m", "classicnets", "train", "--model", "nonet"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith("classicnets train: error: unknown model 'nonet'")
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()
