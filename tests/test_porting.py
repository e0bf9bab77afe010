"""Weight porting from torchvision: every supported network computes what torchvision's
computes with the same weights, conversions round-trip, failures are one-sentence errors."""

import functools
import json
import urllib.error

import pytest
import torch
import torchvision
from safetensors import safe_open
from torch import nn

from classicnets import UserError, create_model
from classicnets.cli.main import main
from classicnets.models import GoogLeNetOutput, porting
from classicnets.models.porting import (adapt_first_conv, build_pretrained, load_ported_weights,
                                        ours_to_torchvision, port_report, port_torchvision_state_dict,
                                        save_ported_weights, torchvision_to_ours)
from classicnets.models.registry import get_model_entry

TOLERANCE = 1e-5


def randomise_batch_norm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random affine parameters and running statistics, so eval-mode BN is not the identity."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return model


@functools.lru_cache(maxsize=1)
def random_googlenet_state() -> dict[str, torch.Tensor]:
    """Random weights for torchvision's GoogLeNet with aux heads, built once per session."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
        # torchvision's std-0.01 init lets the signal die out over 22 layers: the logits
        # would be the same for every input and could not tell a wrong port from a right one.
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return randomise_batch_norm(model).state_dict()


def torchvision_model(name: str, **kwargs) -> nn.Module:
    """torchvision's network with random weights (and random batch-norm statistics)."""
    if name != "googlenet_tv":
        return randomise_batch_norm(getattr(torchvision.models, name)(weights=None, **kwargs))
    kwargs = {"aux_logits": True, **kwargs}
    model = torchvision.models.googlenet(weights=None, init_weights=False, **kwargs)
    state = random_googlenet_state()
    model.load_state_dict({k: v for k, v in state.items() if kwargs["aux_logits"] or not k.startswith("aux")})
    return model


def ported(name: str, tv_model: nn.Module, **kwargs) -> nn.Module:
    """Our model loaded with tv_model's weights through the converter (strict load)."""
    model = create_model(name, num_classes=kwargs.pop("num_classes", 1000), init_weights=False, **kwargs)
    model.load_state_dict(torchvision_to_ours(name, tv_model.state_dict()))
    return model


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def assert_depends_on_input(logits: torch.Tensor) -> None:
    """Two different images must give different logits, or matching outputs prove nothing."""
    assert max_abs_diff(logits[0], logits[1]) > 1e-3


@pytest.mark.parametrize("name,size", [
    ("vgg11", 64), ("vgg13", 64), ("vgg16", 224), ("vgg19", 64), ("vgg11_bn", 64), ("vgg16_bn", 64),
])
def test_vgg_matches_torchvision(name, size):
    torch.manual_seed(0)
    tv = torchvision_model(name).eval()
    ours = ported(name, tv).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert got.shape == (2, 1000)
    assert_depends_on_input(expected)
    assert max_abs_diff(got, expected) <= TOLERANCE


@pytest.mark.parametrize("size", [64, 224])
def test_googlenet_tv_matches_torchvision_in_eval_mode(size):
    torch.manual_seed(0)
    tv = torchvision_model("googlenet_tv").eval()
    ours = ported("googlenet_tv", tv).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert isinstance(got, torch.Tensor) and got.shape == (2, 1000)
    assert_depends_on_input(expected)
    assert max_abs_diff(got, expected) <= TOLERANCE


def test_googlenet_tv_aux_heads_match_torchvision_in_train_mode():
    torch.manual_seed(0)
    tv = torchvision_model("googlenet_tv").train()
    ours = ported("googlenet_tv", tv).train()
    x = torch.randn(2, 3, 64, 64)
    outputs = []
    for model in (tv, ours):
        torch.manual_seed(1)  # the same dropout masks: both draw them in the same order
        with torch.no_grad():
            outputs.append(model(x))
    expected, got = outputs
    assert isinstance(got, GoogLeNetOutput)
    for ours_out, tv_out in zip((got.logits, got.aux1, got.aux2), (expected.logits, expected.aux_logits1,
                                                                   expected.aux_logits2)):
        assert ours_out.shape == (2, 1000)
        assert_depends_on_input(tv_out)
        assert max_abs_diff(ours_out, tv_out) <= TOLERANCE


def test_googlenet_tv_transform_input_matches_torchvision():
    torch.manual_seed(0)
    tv = torchvision_model("googlenet_tv", transform_input=True).eval()
    ours = ported("googlenet_tv", tv, transform_input=True).eval()
    plain = ported("googlenet_tv", tv, transform_input=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
        assert max_abs_diff(plain(x), expected) > 1e-3  # the transform does change the result
    assert_depends_on_input(expected)
    assert max_abs_diff(got, expected) <= TOLERANCE


@pytest.mark.parametrize("name", ["vgg11_bn", "googlenet_tv"])
def test_round_trip_ours_to_torchvision_to_ours(name):
    with torch.device("meta"):  # names and shapes only
        tv = (torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
              if name == "googlenet_tv" else torchvision.models.vgg11_bn())
    ours = {k: torch.randn(v.shape) if v.dim() else torch.tensor(7)
            for k, v in torchvision_to_ours(name, tv.state_dict()).items()}
    tv_layout = ours_to_torchvision(name, ours)
    assert set(tv_layout) == set(tv.state_dict())  # torchvision's own names, every one
    back = torchvision_to_ours(name, tv_layout)
    assert list(back) == list(ours)
    assert all(torch.equal(back[k], ours[k]) for k in ours)


def test_googlenet_tv_rename_table():
    sd = {k: torch.empty(0) for k in ["conv2.conv.weight", "conv3.bn.bias", "inception4a.branch1.conv.weight",
                                      "inception4a.branch2.1.bn.running_var", "inception5b.branch3.0.conv.weight",
                                      "inception3a.branch4.1.conv.weight", "aux1.fc2.bias", "conv1.conv.weight"]}
    renamed = porting._rename("googlenet_tv", sd, to_ours=True)
    assert list(renamed) == ["conv2_reduce.conv.weight", "conv2.bn.bias", "inception4a.branch1x1.conv.weight",
                             "inception4a.branch3x3.1.bn.running_var", "inception5b.branch5x5.0.conv.weight",
                             "inception3a.branch_pool.1.conv.weight", "aux1.fc2.bias", "conv1.conv.weight"]
    assert list(porting._rename("googlenet_tv", renamed, to_ours=False)) == list(sd)


def test_mismatched_state_dict_names_the_misfits():
    with torch.device("meta"):
        sd = torchvision.models.vgg11().state_dict()
    with pytest.raises(UserError, match="does not fit vgg13: missing features.2.weight"):
        torchvision_to_ours("vgg13", sd)  # vgg11 weights for vgg13
    sd = dict(sd)
    sd["features.3.weight"] = torch.empty(128, 64, 5, 5, device="meta")
    del sd["classifier.0.bias"]
    sd["extra.weight"] = torch.empty(1, device="meta")
    with pytest.raises(UserError) as info:
        torchvision_to_ours("vgg11", sd)
    message = str(info.value)
    assert "missing classifier.0.bias" in message and "unexpected extra.weight" in message
    assert "features.3.weight (got [128, 64, 5, 5], expected [128, 64, 3, 3])" in message
    assert message.count(".") and "\n" not in message
    with pytest.raises(UserError, match="the source is not a state dict"):
        torchvision_to_ours("vgg11", {"features.0.weight": [1, 2, 3]})


@pytest.mark.parametrize("name,match", [
    ("vgg11_lrn", "torchvision has no weights for vgg11_lrn; the models that have them are vgg11, vgg13"),
    ("vgg16_c", "torchvision has no weights for vgg16_c;"),
    ("vgg16_c_bn", "torchvision has no weights for vgg16_c_bn;"),
    ("googlenet_paper", "googlenet_tv"),
    ("googlenet", "true 5x5 kernels .* use googlenet_tv"),
])
def test_models_without_torchvision_weights_are_refused(name, match, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("an unsupported model must fail before any download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    with pytest.raises(UserError, match=match):
        create_model(name, pretrained="torchvision")
    with pytest.raises(UserError, match=match):
        torchvision_to_ours(name, {})


def offline(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_offline_download_is_one_sentence_user_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError) as info:
        create_model("vgg16", pretrained="torchvision")
    message = str(info.value)
    assert message.startswith("could not download torchvision's vgg16 ImageNet weights "
                              "([Errno -3] Temporary failure in name resolution)")
    assert str(tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth") in message
    assert message.endswith(".") and message.count(". ") == 0 and "\n" not in message


def test_hash_mismatch_and_damaged_cache_are_user_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def bad_hash(*args, **kwargs):
        raise RuntimeError('invalid hash value (expected "8a7f2d6b", got "0000")')

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", bad_hash)
    with pytest.raises(UserError, match="could not download .*invalid hash value"):
        porting.download_torchvision_state_dict("googlenet_tv")
    cached = tmp_path / "hub" / "checkpoints" / "googlenet-1378be20.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a checkpoint")
    monkeypatch.undo()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # the real loader reads the damaged file
    with pytest.raises(UserError, match=f"could not read .* from {cached} .*delete the file"):
        porting.download_torchvision_state_dict("googlenet_tv")


def test_cli_port_offline_exits_2_without_traceback(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    out = tmp_path / "vgg16.safetensors"
    assert main(["port", "vgg16", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("classicnets port: error: could not download torchvision's vgg16 ImageNet weights")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_cli_port_unsupported_model_exits_2(tmp_path, capsys):
    assert main(["port", "googlenet_paper", "--out", str(tmp_path / "w.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "torchvision has no weights for googlenet_paper" in err and "Traceback" not in err


def test_cli_port_missing_source_file_exits_2(tmp_path, capsys):
    assert main(["port", "vgg11", "--from-file", str(tmp_path / "absent.pth"),
                 "--out", str(tmp_path / "w.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    assert main(["port", "vgg11", "--from-file", str(bad), "--out", str(tmp_path / "w.safetensors")]) == 2
    assert "could not read" in capsys.readouterr().err


@pytest.mark.parametrize("name, text", [("notes.txt", "hello\n"), ("table.csv", "a,b\n1,2\n3,4\n")])
def test_cli_port_from_a_text_file_exits_2(tmp_path, capsys, name, text):
    # torch's weights-only unpickler fails on such bytes with KeyError or IndexError
    source = tmp_path / name
    source.write_text(text)
    out = tmp_path / "p.safetensors"
    assert main(["port", "googlenet_tv", "--from-file", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"could not read {source} as a PyTorch state dict (not a file written by torch.save)." in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_a_cached_text_file_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "googlenet-1378be20.pth"
    cached.parent.mkdir(parents=True)
    cached.write_text("hello\n")
    with pytest.raises(UserError, match=f"could not read .* from {cached} .*delete the file"):
        porting.download_torchvision_state_dict("googlenet_tv")


def test_cli_port_from_file_end_to_end(tmp_path, capsys):
    torch.manual_seed(0)
    tv = torchvision_model("googlenet_tv", transform_input=True).eval()
    source = tmp_path / "tv_googlenet.pth"
    torch.save(tv.state_dict(), source)
    out = tmp_path / "googlenet_tv.safetensors"
    assert main(["port", "googlenet_tv", "--from-file", str(source), "--out", str(out)]) == 0
    assert f"wrote {out}: googlenet_tv: 1000 classes, 3 input channels; 364 tensors loaded" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # no temp file left

    with safe_open(str(out), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["model"] == "googlenet_tv" and metadata["source"] == "torchvision"
    assert (metadata["num_classes"], metadata["in_chans"]) == ("1000", "3")
    assert json.loads(metadata["model_kwargs"]) == {"aux_logits": True, "transform_input": True}

    ours = load_ported_weights(out).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = tv(x)
        assert_depends_on_input(expected)
        assert max_abs_diff(ours(x), expected) <= TOLERANCE


def test_cli_port_from_file_with_new_head_and_grey_input(tmp_path, capsys):
    torch.manual_seed(0)
    tv = torchvision_model("googlenet_tv")
    source = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), source)
    out = tmp_path / "grey10.safetensors"
    args = ["port", "googlenet_tv", "--from-file", str(source), "--out", str(out), "--num-classes", "10",
            "--in-chans", "1"]
    assert main(args) == 0
    assert "10 classes, 1 input channel; 357 tensors loaded, 1 adapted, 6 new" in capsys.readouterr().out
    model = load_ported_weights(out)
    assert model.conv1.conv.weight.shape == (64, 1, 7, 7) and model.fc.weight.shape == (10, 1024)
    assert not model.transform_input  # the RGB re-normalisation cannot apply to one channel


def test_head_replacement_keeps_everything_but_the_classifier(monkeypatch):
    torch.manual_seed(0)
    tv_state = torchvision_model("vgg11").state_dict()
    monkeypatch.setattr(porting, "download_torchvision_state_dict", lambda name: tv_state)
    model = create_model("vgg11", num_classes=10, pretrained="torchvision")
    report = port_report(model)
    assert report.new == ("classifier.6.weight", "classifier.6.bias")
    assert report.adapted == () and report.dropped == ()
    state = model.state_dict()
    assert set(report.loaded) == set(state) - set(report.new)
    assert all(torch.equal(state[k], tv_state[k]) for k in report.loaded)
    assert state["classifier.6.weight"].shape == (10, 4096)
    assert state["classifier.6.weight"].std() > 0  # freshly initialised, not zeros


def test_googlenet_new_head_replaces_aux_classifiers_too(monkeypatch):
    torch.manual_seed(0)
    tv_state = torchvision_model("googlenet_tv").state_dict()
    monkeypatch.setattr(porting, "download_torchvision_state_dict", lambda name: tv_state)
    model = create_model("googlenet_tv", num_classes=10, pretrained="torchvision")
    assert set(port_report(model).new) == {f"{m}.{p}" for m in ("fc", "aux1.fc2", "aux2.fc2")
                                           for p in ("weight", "bias")}
    assert model.transform_input  # as torchvision sets for its ImageNet weights
    no_aux = build_pretrained(get_model_entry("googlenet_tv"), aux_logits=False)
    assert len(port_report(no_aux).dropped) == 20 and no_aux.aux1 is None
    state = no_aux.state_dict()
    assert torch.equal(state["conv2_reduce.conv.weight"], tv_state["conv2.conv.weight"])
    assert torch.equal(state["conv2.bn.running_var"], tv_state["conv3.bn.running_var"])
    assert torch.equal(state["inception4e.branch_pool.1.conv.weight"], tv_state["inception4e.branch4.1.conv.weight"])


@pytest.mark.parametrize("in_chans", [1, 4])
def test_first_conv_adaptation_keeps_activations_on_channel_equal_input(in_chans, monkeypatch):
    torch.manual_seed(0)
    tv_state = torchvision_model("googlenet_tv").state_dict()
    monkeypatch.setattr(porting, "download_torchvision_state_dict", lambda name: tv_state)
    rgb = create_model("googlenet_tv", pretrained="torchvision", transform_input=False).eval()
    adapted = create_model("googlenet_tv", in_chans=in_chans, pretrained="torchvision").eval()
    assert port_report(adapted).adapted == ("conv1.conv.weight",)
    grey = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        expected = rgb(grey.expand(-1, 3, -1, -1))
        assert_depends_on_input(expected)
        got = adapted(grey.expand(-1, in_chans, -1, -1))
    # The adapted conv adds the filter taps in another order, so rounding differs slightly
    # (logits here are ~5); a wrong adaptation rule would be off by whole units.
    assert max_abs_diff(got, expected) <= 1e-4


def test_adapt_first_conv_rule():
    weight = torch.randn(8, 3, 3, 3)
    assert torch.allclose(adapt_first_conv(weight, 1), weight.sum(dim=1, keepdim=True))
    two = adapt_first_conv(weight, 2)
    assert two.shape == (8, 2, 3, 3)
    assert torch.allclose(two[:, 0], weight.mean(dim=1) * 3 / 2) and torch.equal(two[:, 0], two[:, 1])


def test_port_report_and_save_need_a_ported_model(tmp_path):
    with torch.device("meta"):
        model = create_model("googlenet_tv")
    with pytest.raises(UserError, match="no port report"):
        port_report(model)
    with pytest.raises(UserError, match="no port report"):
        save_ported_weights(model, tmp_path / "w.safetensors")


def test_save_refuses_missing_folder_and_load_refuses_foreign_files(tmp_path):
    torch.manual_seed(0)
    model = port_torchvision_state_dict("googlenet_tv", torchvision_model("googlenet_tv", aux_logits=False)
                                        .state_dict())
    assert port_report(model).model_kwargs == {"aux_logits": False, "transform_input": True}
    with pytest.raises(UserError, match="does not exist"):
        save_ported_weights(model, tmp_path / "absent" / "w.safetensors")
    with pytest.raises(UserError, match="is a folder"):
        save_ported_weights(model, tmp_path)
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(1)}, str(foreign))
    with pytest.raises(UserError, match="no classicnets model metadata"):
        load_ported_weights(foreign)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 3)
    with pytest.raises(UserError, match="could not read"):
        load_ported_weights(garbage)


def test_a_ported_file_is_not_mistaken_for_a_trained_run(tmp_path):
    """`classicnets port` writes weights without class names or preprocessing: commands that
    need a trained run say so in one sentence instead of failing on a missing key."""
    from classicnets.engine.checkpoint import load_run
    from classicnets.engine.checkpoint import save_weights

    path = tmp_path / "ported.safetensors"
    model = create_model("vgg11", num_classes=3, in_chans=1)
    save_weights(path, model.state_dict(), {"model": "vgg11", "num_classes": 3, "in_chans": 1,
                                            "source": "torchvision", "model_kwargs": {}})
    with pytest.raises(UserError, match="lacks image_size, mean, std, class_names"):
        load_run(path)


def test_port_never_passes_on_torchs_advice_to_turn_off_weights_only(tmp_path, capsys):
    source = tmp_path / "notes.md"
    source.write_text("# a markdown file\n\nnot weights\n")
    assert main(["port", "vgg11", "--from-file", str(source), "--out", str(tmp_path / "p.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "could not read" in err and "weights_only" not in err and "arbitrary code" not in err


# ----------------------------------------------------------------------------- LeNet, AlexNet, ResNet, Inception v3
# Their registry entries name torchvision's weights, and their state-dict keys are
# torchvision's, so porting needs no rename table: nothing in porting.py names them.

NEW_FAMILY_PORTS = {  # our name -> (torchvision builder, smallest input that works for both, extra kwargs)
    "alexnet": ("alexnet", 63, {}),
    "resnet18": ("resnet18", 32, {}),
    "inception_v3": ("inception_v3", 75, {"aux_logits": True, "init_weights": False}),
}


@functools.lru_cache(maxsize=None)
def random_tv_state(name: str) -> dict[str, torch.Tensor]:
    """Random weights (and batch-norm statistics) for torchvision's network, once per session."""
    builder, _, kwargs = NEW_FAMILY_PORTS[name]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = getattr(torchvision.models, builder)(weights=None, **kwargs)
        if name == "inception_v3":  # init_weights=False leaves PyTorch's defaults: He-like, so the signal lives
            for module in model.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return randomise_batch_norm(model).state_dict()


def tv_new_family(name: str, **kwargs) -> nn.Module:
    builder, _, defaults = NEW_FAMILY_PORTS[name]
    model = getattr(torchvision.models, builder)(weights=None, **{**defaults, **kwargs})
    model.load_state_dict(random_tv_state(name))
    return model.eval()


@pytest.mark.parametrize("name", ["alexnet", "resnet18", pytest.param("inception_v3", marks=pytest.mark.slow)])
def test_new_families_match_torchvision_both_ways_in_eval_mode(name):
    size = NEW_FAMILY_PORTS[name][1]
    tv = tv_new_family(name)
    ours = ported(name, tv).eval()
    torch.manual_seed(1)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert isinstance(got, torch.Tensor) and got.shape == (2, 1000)
    assert_depends_on_input(expected)
    assert max_abs_diff(got, expected) <= TOLERANCE
    # ...and back: our weights, renamed to torchvision's keys, give torchvision's network our logits.
    torch.manual_seed(2)
    source = create_model(name, num_classes=1000).eval()
    randomise_batch_norm(source, seed=3)
    back = tv_new_family(name)
    back.load_state_dict(ours_to_torchvision(name, source.state_dict()))
    with torch.no_grad():
        expected, got = source(x), back.eval()(x)
    assert_depends_on_input(expected)
    assert max_abs_diff(got, expected) <= TOLERANCE


@pytest.mark.slow
def test_inception_v3_pretrained_gets_transform_input_and_keeps_its_aux_head(monkeypatch):
    monkeypatch.setattr(porting, "download_torchvision_state_dict", lambda name: random_tv_state(name))
    model = create_model("inception_v3", num_classes=10, pretrained="torchvision")
    report = port_report(model)
    assert report.model_kwargs == {"aux_logits": True, "transform_input": True}  # as torchvision sets for them
    assert set(report.new) == {f"{m}.{p}" for m in ("fc", "AuxLogits.fc") for p in ("weight", "bias")}
    assert model.transform_input and model.aux_outputs == {"aux": 0.4}
    tv = tv_new_family("inception_v3", transform_input=True)
    rgb = create_model("inception_v3", pretrained="torchvision").eval()
    x = torch.randn(2, 3, 75, 75)
    with torch.no_grad():
        assert max_abs_diff(rgb(x), tv(x)) <= TOLERANCE
    grey = create_model("inception_v3", in_chans=1, pretrained="torchvision")
    assert port_report(grey).adapted == ("Conv2d_1a_3x3.conv.weight",) and not grey.transform_input


def test_resnet_pretrained_with_new_head_and_grey_stem(monkeypatch):
    monkeypatch.setattr(porting, "download_torchvision_state_dict", lambda name: random_tv_state(name))
    model = create_model("resnet18", num_classes=10, in_chans=1, pretrained="torchvision")
    report = port_report(model)
    assert report.new == ("fc.weight", "fc.bias") and report.adapted == ("conv1.weight",)
    assert report.model_kwargs == {}  # no transform_input: torchvision's ResNet weights take plain input


def test_weight_names_come_from_the_registry():
    from classicnets.models import get_model_entry

    assert porting.torchvision_weights_name("alexnet") == "AlexNet_Weights.IMAGENET1K_V1"
    assert porting.torchvision_weights_name("inception_v3") == "Inception_V3_Weights.IMAGENET1K_V1"
    for depth in (18, 34, 50, 101, 152):  # V1: the paper-era recipe, though 50/101/152 also have V2
        assert porting.torchvision_weights_name(f"resnet{depth}") == f"ResNet{depth}_Weights.IMAGENET1K_V1"
    assert get_model_entry("inception_v3").torchvision_transform_input
    listed = porting.models_with_torchvision_weights()
    assert listed[:9] == ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
                          "googlenet_tv"]
    assert set(listed[9:]) == {"alexnet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                               "inception_v3"}
    pytest.importorskip("torchvision")
    from torchvision.models import get_weight

    for name in listed:  # every declared enum exists in the installed torchvision (no download)
        assert get_weight(porting.torchvision_weights_name(name)).url.endswith(".pth")


@pytest.mark.parametrize("name,match", [
    ("alexnet_paper", "two-tower layout .* use alexnet"),
    ("resnet50_paper", "stride on the 3x3 convolution; use resnet50"),
    ("resnet20", "torchvision has no weights for resnet20;"),
    ("lenet5", "torchvision has no weights for lenet5;"),
])
def test_new_models_without_torchvision_weights_are_refused(name, match, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)  # refused before any download
    with pytest.raises(UserError, match=match):
        create_model(name, pretrained="torchvision")
    assert main(["port", name, "--out", str(tmp_path / "w.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_port_resnet18_from_file(tmp_path, capsys):
    source = tmp_path / "tv_resnet18.pth"
    torch.save(random_tv_state("resnet18"), source)
    out = tmp_path / "resnet18.safetensors"
    assert main(["port", "resnet18", "--from-file", str(source), "--out", str(out), "--num-classes", "10"]) == 0
    assert "resnet18: 10 classes, 3 input channels;" in capsys.readouterr().out
    model = load_ported_weights(out).eval()
    state = model.state_dict()
    assert state["fc.weight"].shape == (10, 512)
    assert torch.equal(state["layer4.1.bn2.running_var"], random_tv_state("resnet18")["layer4.1.bn2.running_var"])
