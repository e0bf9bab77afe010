"""The VGG paper's staged initialisation (section 3.1): a deeper configuration takes the
first four convolutions and the three fully-connected layers of a trained configuration A,
by position, never by name."""

from __future__ import annotations

import pytest
import torch

import classicnets
from classicnets.cli.main import main
from classicnets.engine import loop as engine_loop
from classicnets.errors import UserError
from classicnets.models.staged_init import copy_pairs, staged_init_pairs

from test_train import synthetic_build_data

FC = [("classifier.0", "classifier.0"), ("classifier.3", "classifier.3"), ("classifier.6", "classifier.6")]


def on_meta(name: str, **kwargs):
    with torch.device("meta"):
        return classicnets.create_model(name, num_classes=10, in_chans=1, **kwargs)


def test_a_into_d_takes_conv1_1_conv2_1_conv3_1_conv3_2_and_the_fc_layers():
    pairs = staged_init_pairs("vgg-staged", on_meta("vgg11"), on_meta("vgg16"))
    # A: conv1_1 features.0, conv2_1 .3, conv3_1 .6, conv3_2 .8; D: conv1_1 .0, conv2_1 .5, conv3_1 .10, conv3_2 .12
    assert pairs == [("features.0", "features.0"), ("features.3", "features.5"), ("features.6", "features.10"),
                     ("features.8", "features.12"), *FC]


def test_a_into_e_is_the_same_by_position():
    pairs = staged_init_pairs("vgg-staged", on_meta("vgg11"), on_meta("vgg19"))
    assert pairs == [("features.0", "features.0"), ("features.3", "features.5"), ("features.6", "features.10"),
                     ("features.8", "features.12"), *FC]


def test_batch_norm_comes_along_with_its_convolution():
    pairs = staged_init_pairs("vgg-staged", on_meta("vgg11_bn"), on_meta("vgg16_bn"))
    assert pairs[:2] == [("features.0", "features.0"), ("features.1", "features.1")]
    assert ("features.4", "features.7") in pairs  # A's conv2_1 + BN -> D's conv2_1 + BN


def test_copy_changes_exactly_the_named_tensors():
    torch.manual_seed(0)
    source = classicnets.create_model("vgg11", num_classes=10, in_chans=1)
    target = classicnets.create_model("vgg16", num_classes=10, in_chans=1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    lines = copy_pairs(source, target, staged_init_pairs("vgg-staged", source, target))
    assert len(lines) == 7 and all(line.startswith("copied") for line in lines)
    after, src = target.state_dict(), source.state_dict()
    assert torch.equal(after["features.5.weight"], src["features.3.weight"])
    assert torch.equal(after["classifier.6.bias"], src["classifier.6.bias"])
    copied = {f"features.{i}.{t}" for i in (0, 5, 10, 12) for t in ("weight", "bias")} | {
        f"classifier.{i}.{t}" for i in (0, 3, 6) for t in ("weight", "bias")}
    source_name = {f"features.{d}": f"features.{a}" for a, d in ((0, 0), (3, 5), (6, 10), (8, 12))}
    for name in after:
        module, tensor = name.rsplit(".", 1)
        if name in copied:
            assert torch.equal(after[name], src[f"{source_name.get(module, module)}.{tensor}"]), name
        else:
            assert torch.equal(after[name], before[name]), name  # intermediate layers stay at random
    assert not torch.equal(after["features.10.weight"], before["features.10.weight"])


def test_other_families_are_refused():
    with pytest.raises(UserError, match="both the source run and the model must be VGGs"):
        staged_init_pairs("vgg-staged", on_meta("vgg11"), on_meta("googlenet"))


def test_train_flag_needs_init_from(capsys):
    assert main(["train", "--model", "vgg16", "--init-mode", "vgg-staged"]) == 2
    assert "give it with --init-from" in capsys.readouterr().err


@pytest.mark.slow
def test_train_starts_a_deeper_vgg_from_a_trained_a(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(engine_loop, "build_data", synthetic_build_data)
    common = ["--image-size", "32", "--batch-size", "32", "--epochs", "1", "--device", "cpu", "--quiet"]
    assert main(["train", "--model", "vgg11", *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["train", "--model", "vgg13", *common, "--out", str(tmp_path / "b"),
                 "--init-from", str(tmp_path / "a"), "--init-mode", "vgg-staged"]) == 0
    out = capsys.readouterr().out
    assert "(vgg-staged)" in out and "copied features.3 -> features.5" in out
