"""Transfer: init_from (head replacement, 1 <-> 3 channel stems, refusals), the report,
freeze_features and param_groups. GoogLeNet is small enough (6-13 M parameters) to save
and reload for real; VGG's naming is checked on the meta device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import classicnets
from classicnets.engine.checkpoint import save_weights
from classicnets.engine.transfer import (adapt_input_channels, class_layers, freeze_features, head_module_names,
                                         init_from, param_groups, stem_conv)
from classicnets.errors import UserError

HEAD_LAYERS = ["fc", "aux1.fc2", "aux2.fc2"]


def googlenet(num_classes: int, in_chans: int, seed: int, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return classicnets.create_model("googlenet", num_classes=num_classes, in_chans=in_chans, **kwargs)


def save_run(model: torch.nn.Module, run_dir: Path, name: str = "googlenet") -> Path:
    run_dir.mkdir(parents=True)
    save_weights(run_dir / "best.safetensors", model.state_dict(),
                 {"model": name, "num_classes": 10, "in_chans": 1, "image_size": 32})
    return run_dir


@pytest.fixture(scope="module")
def fashion_source(module_tmp_path) -> tuple[torch.nn.Module, Path]:
    """A 1-channel, 10-class GoogLeNet saved as a run, standing in for a Fashion-MNIST run."""
    model = googlenet(10, 1, seed=0).eval()
    with torch.no_grad():  # give batch norm non-trivial statistics so they matter in the comparison
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model, save_run(model, module_tmp_path / "fashion")


def test_one_to_three_channels_gives_the_same_logits(fashion_source):
    source, run_dir = fashion_source
    target = googlenet(10, 3, seed=1)
    report = init_from(target, run_dir)
    assert report.adapted == {"conv1.conv.weight": "input channels 1 -> 3: kernel replicated and scaled by 1/3"}
    assert not report.initialised and not report.unused
    assert report.source_model == "googlenet"
    grey = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target.eval()(grey.repeat(1, 3, 1, 1)), source(grey), rtol=1e-4, atol=1e-5)


def test_three_to_one_channel_sums_the_kernel(tmp_path):
    source = googlenet(4, 3, seed=2, aux_logits=False).eval()
    run_dir = save_run(source, tmp_path / "rgb")
    target = googlenet(4, 1, seed=3, aux_logits=False)
    report = init_from(target, run_dir / "best.safetensors")  # the file itself works too
    assert report.adapted["conv1.conv.weight"] == "input channels 3 -> 1: kernel summed over its channels"
    grey = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target.eval()(grey), source(grey.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-5)


def test_head_is_replaced_when_the_class_count_differs(fashion_source):
    source, run_dir = fashion_source
    target = googlenet(2, 3, seed=4)
    fresh = {name: tensor.clone() for name, tensor in target.state_dict().items()}
    report = init_from(target, run_dir)
    new = sorted(report.initialised)
    assert new == sorted(f"{layer}.{kind}" for layer in HEAD_LAYERS for kind in ("weight", "bias"))
    assert all("class count differs (source 10, model 2)" == why for why in report.initialised.values())
    state, source_state = target.state_dict(), source.state_dict()
    for name in new:  # the new heads keep their fresh initialisation
        assert torch.equal(state[name], fresh[name])
    for name in report.loaded:
        assert torch.equal(state[name], source_state[name])
    assert len(report.loaded) + len(report.adapted) + len(report.initialised) == len(state)
    text = str(report)
    assert f"loaded       {len(report.loaded)} tensors" in text
    assert "aux1.fc2.weight, aux1.fc2.bias, aux2.fc2.weight, aux2.fc2.bias, fc.weight, fc.bias: class count " \
           "differs (source 10, model 2)" in text
    assert "conv1.conv.weight: input channels 1 -> 3" in text


def test_aux_heads_absent_from_the_target_are_reported_unused(fashion_source):
    _, run_dir = fashion_source
    target = googlenet(10, 1, seed=5, aux_logits=False)
    report = init_from(target, run_dir)
    assert report.unused and all(name.startswith(("aux1.", "aux2.")) for name in report.unused)
    assert not report.adapted and not report.initialised


def test_refuses_other_architectures_and_missing_files(fashion_source, tmp_path):
    _, run_dir = fashion_source
    torchvision_layout = classicnets.create_model("googlenet_tv", num_classes=10, in_chans=1, aux_logits=False)
    with pytest.raises(UserError, match="do not fit this model .* differ in shape"):
        init_from(torchvision_layout, run_dir)  # its "5x5" branches are 3x3
    target = googlenet(2, 3, seed=0, aux_logits=False)
    with pytest.raises(UserError, match="no weights at"):
        init_from(target, tmp_path / "nowhere")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"something.else": torch.zeros(3)}, str(foreign))
    with pytest.raises(UserError, match="no tensor of .* matches this model by name"):
        init_from(target, foreign)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="is not a readable safetensors file"):
        init_from(target, garbage)


def test_adapt_input_channels_identities():
    kernel = torch.randn(5, 1, 3, 3)
    widened = adapt_input_channels(kernel, 4)
    assert widened.shape == (5, 4, 3, 3)
    torch.testing.assert_close(widened.sum(1, keepdim=True), kernel)
    torch.testing.assert_close(adapt_input_channels(widened, 1), kernel)
    with pytest.raises(ValueError):
        adapt_input_channels(torch.randn(5, 3, 3, 3), 4)


def test_vgg_head_and_stem_names():
    with torch.device("meta"):
        vgg = classicnets.create_model("vgg16_bn", num_classes=2)
    assert head_module_names(vgg) == ["classifier"]
    assert class_layers(vgg) == ["classifier.6"]
    assert stem_conv(vgg) == "features.0"
    with torch.device("meta"):
        net = classicnets.create_model("googlenet", num_classes=2, aux_logits=False)
    assert head_module_names(net) == ["fc"] and class_layers(net) == ["fc"] and stem_conv(net) == "conv1.conv"


def test_freeze_features_trains_only_the_head():
    with torch.device("meta"):
        vgg = classicnets.create_model("vgg11", num_classes=2)
    frozen = freeze_features(vgg)
    trainable = {name for name, p in vgg.named_parameters() if p.requires_grad}
    assert trainable == {f"classifier.{i}.{kind}" for i in (0, 3, 6) for kind in ("weight", "bias")}
    assert frozen == sum(p.numel() for n, p in vgg.named_parameters() if n.startswith("features."))

    net = googlenet(2, 3, seed=0)
    freeze_features(net)
    heads = {name.split(".")[0] for name, p in net.named_parameters() if p.requires_grad}
    assert heads == {"fc", "aux1", "aux2"}


def test_param_groups_split_body_and_head_rates():
    with torch.device("meta"):
        net = classicnets.create_model("googlenet", num_classes=2)
    groups = param_groups(net, backbone_lr=0.001, head_lr=0.01, weight_decay=5e-4)
    by_key = {(g["name"], g["weight_decay"]): g for g in groups}
    assert set(by_key) == {("backbone", 5e-4), ("backbone", 0.0), ("head", 5e-4), ("head", 0.0)}
    assert by_key[("backbone", 5e-4)]["lr"] == 0.001 and by_key[("backbone", 5e-4)]["lr_scale"] == pytest.approx(0.1)
    assert by_key[("head", 0.0)]["lr_scale"] == 1.0
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in net.parameters())  # each parameter exactly once
    head_ids = {id(p) for g in groups if g["name"] == "head" for p in g["params"]}
    assert head_ids == {id(p) for n, p in net.named_parameters() if n.startswith(("fc.", "aux1.", "aux2."))}

    freeze_features(net)
    assert {g["name"] for g in param_groups(net, 0.001, 0.01)} == {"head"}  # frozen body: no group
    torch.optim.SGD(param_groups(googlenet(2, 3, seed=0), 0.001, 0.01), lr=0.01)  # the optimizer accepts them
    with pytest.raises(UserError, match="learning rates must be positive"):
        param_groups(net, 0.001, 0.0)
