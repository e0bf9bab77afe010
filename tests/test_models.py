"""The networks: parameter counts from REFERENCE.md, shapes at every size, aux outputs."""

import pytest
import torch
from torch import nn

from classicnets import create_model, list_models
from classicnets.models import GoogLeNetOutput
from classicnets.models.googlenet import INCEPTION_TABLE, inception_out_channels
from classicnets.models.vgg import VGG_CONFIGS


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):  # counts and structure only: no memory, no init cost
        return create_model(name, **kwargs)


# Exact counts, 3 input channels, 1000 classes (REFERENCE.md).
EXACT_COUNTS = {
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840,
    "vgg16_bn": 138_365_992,
}

# Table 2 of the VGG paper, in millions.
TABLE2_MILLIONS = {"vgg11": 133, "vgg11_lrn": 133, "vgg13": 133, "vgg16_c": 134, "vgg16": 138, "vgg19": 144}

GOOGLENET_COUNTS = {  # (without aux heads, with aux heads)
    "googlenet": (7_005_832, 13_385_816),
    "googlenet_tv": (6_624_904, 13_004_888),
}


@pytest.mark.parametrize("name,expected", EXACT_COUNTS.items())
def test_vgg_exact_parameter_counts(name, expected):
    assert n_params(meta_model(name)) == expected


@pytest.mark.parametrize("name,millions", TABLE2_MILLIONS.items())
def test_vgg_table2_parameter_counts(name, millions):
    assert round(n_params(meta_model(name)) / 1e6) == millions


@pytest.mark.parametrize("name,counts", GOOGLENET_COUNTS.items())
def test_googlenet_parameter_counts(name, counts):
    without_aux, with_aux = counts
    assert n_params(meta_model(name, aux_logits=False)) == without_aux
    assert n_params(meta_model(name, aux_logits=True)) == with_aux


def test_batch_norm_adds_exactly_two_parameters_per_channel():
    for base in ["vgg11", "vgg13", "vgg16_c", "vgg16", "vgg19"]:
        plain, bn = meta_model(base), meta_model(f"{base}_bn")
        conv_channels = sum(m.out_channels for m in plain.modules() if isinstance(m, nn.Conv2d))
        assert n_params(bn) - n_params(plain) == 2 * conv_channels


def test_every_registered_model_has_a_counted_parameter_total():
    """Every name in the registry is pinned by one of the tables above or by structure
    (LeNet, AlexNet, ResNet and Inception v3: by test_families.py's tables)."""
    from test_families import CIFAR_RESNETS, EXACT_COUNTS as FAMILY_COUNTS

    pinned = set(EXACT_COUNTS) | set(TABLE2_MILLIONS) | set(GOOGLENET_COUNTS) | set(FAMILY_COUNTS) | set(CIFAR_RESNETS)
    for name in list_models():
        total = n_params(meta_model(name))
        assert total > 0
        if name.endswith("_bn"):
            assert name[:-3] in pinned
        elif name != "googlenet_paper":
            assert name in pinned


def test_googlenet_paper_is_googlenet_without_batch_norm_plus_biases():
    bn, paper = meta_model("googlenet"), meta_model("googlenet_paper")
    convs = [m for m in paper.modules() if isinstance(m, nn.Conv2d)]
    bn_channels = sum(m.num_features for m in bn.modules() if isinstance(m, nn.BatchNorm2d))
    assert all(m.bias is not None for m in convs)
    assert n_params(paper) == n_params(bn) - 2 * bn_channels + sum(m.out_channels for m in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in paper.modules())
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in paper.modules()) == 2
    assert paper.dropout.p == pytest.approx(0.4)


def test_vgg_configs_have_the_papers_weight_layer_counts():
    expected = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}
    for config, layers in expected.items():
        convs = sum(1 for spec in VGG_CONFIGS[config] if spec not in ("M", "LRN"))
        assert convs + 3 == layers, config


def test_vgg16_c_uses_1x1_convs_at_the_end_of_blocks_3_to_5():
    model = meta_model("vgg16_c")
    kernels = [m.kernel_size[0] for m in model.features if isinstance(m, nn.Conv2d)]
    assert kernels == [3, 3, 3, 3, 3, 3, 1, 3, 3, 1, 3, 3, 1]


def test_vgg11_lrn_has_alexnets_lrn_after_the_first_conv():
    model = meta_model("vgg11_lrn")
    conv, relu, lrn = list(model.features)[:3]
    assert isinstance(conv, nn.Conv2d) and isinstance(relu, nn.ReLU)
    assert isinstance(lrn, nn.LocalResponseNorm)
    # AlexNet's alpha (1e-4) is not divided by the window size; PyTorch's is.
    assert (lrn.size, lrn.alpha / lrn.size, lrn.beta, lrn.k) == (5, pytest.approx(1e-4), 0.75, 2.0)


def test_inception_output_channels_match_table1():
    depths = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832, "5a": 832, "5b": 1024}
    assert {name: inception_out_channels(name) for name in INCEPTION_TABLE} == depths


SMALL_MODELS = ["vgg11", "vgg11_lrn", "vgg16_c_bn", "googlenet", "googlenet_paper", "googlenet_tv"]


@pytest.mark.parametrize("name", SMALL_MODELS)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_output_shape_at_every_supported_size(name, in_chans):
    model = create_model(name, num_classes=7, in_chans=in_chans).eval()
    with torch.no_grad():
        for size in (28, 32, 64, 96):
            assert model(torch.randn(2, in_chans, size, size)).shape == (2, 7)


@pytest.mark.parametrize("name", ["vgg16", "vgg19_bn", "googlenet", "googlenet_tv"])
def test_output_shape_at_224(name):
    model = create_model(name, num_classes=10, in_chans=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 224, 224)).shape == (1, 10)


def test_all_registered_models_run_at_28px_on_one_channel():
    """At 28 px, or at the smallest size a network declares where 28 px is too small for
    it (AlexNet 63, Inception v3 75) or it takes one size only (lenet5_paper, 32)."""
    from classicnets.models import get_model_entry

    for name in list_models():
        entry = get_model_entry(name)
        size = 28 if entry.size_fits(28) else entry.min_input_size
        model = create_model(name, num_classes=10, in_chans=1, init_weights=False).eval()  # shapes, not values
        with torch.no_grad():
            assert model(torch.randn(1, 1, size, size)).shape == (1, 10), name


@pytest.mark.parametrize("name", ["googlenet", "googlenet_paper", "googlenet_tv"])
def test_googlenet_aux_outputs_in_train_mode_only(name):
    model = create_model(name, num_classes=5, in_chans=1)
    x = torch.randn(2, 1, 64, 64)
    model.train()
    out = model(x)
    assert isinstance(out, GoogLeNetOutput)
    assert out.logits.shape == out.aux1.shape == out.aux2.shape == (2, 5)
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 5)


@pytest.mark.parametrize("name, image_size, paper_pool", [
    ("googlenet", 224, True), ("googlenet_paper", 224, True), ("googlenet", 256, True),
    ("googlenet", 64, False), ("googlenet_tv", 224, False)])
def test_aux_heads_pool_5x5_stride_3_where_the_paper_does(name, image_size, paper_pool):
    # Section 5: "average pooling layer with 5x5 filter size and stride 3, resulting in an
    # 4x4x512 output for the (4a)"; an adaptive 4x4 pool averages other windows at 14x14.
    model = create_model(name, num_classes=3, aux_logits=True, init_weights=False).train()
    seen = {}
    model.aux1.pool.register_forward_hook(lambda module, args, out: seen.update(x=args[0], out=out))
    with torch.no_grad():
        model(torch.randn(1, 3, image_size, image_size))
    x, out = seen["x"], seen["out"]
    assert out.shape[-2:] == (4, 4)
    adaptive = nn.functional.adaptive_avg_pool2d(x, 4)
    if paper_pool:
        assert x.shape[-1] in (14, 16) and torch.equal(out, nn.functional.avg_pool2d(x, 5, stride=3))
        assert not torch.allclose(out, adaptive)
    else:
        assert torch.equal(out, adaptive)


def test_googlenet_without_aux_returns_plain_logits_in_train_mode():
    model = create_model("googlenet", num_classes=3, aux_logits=False).train()
    out = model(torch.randn(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)
    assert model.aux1 is None and model.aux2 is None


@pytest.mark.parametrize("name,size,spatial", [("googlenet", 224, 7), ("googlenet_tv", 224, 7), ("vgg16", 224, 7),
                                               ("googlenet", 28, 1), ("vgg16", 28, 1)])
def test_feature_map_sizes(name, size, spatial):
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, size, size))
    assert features.shape[-2:] == (spatial, spatial)


def test_googlenet_stem_follows_table1_sizes_at_224():
    model = create_model("googlenet", aux_logits=False).eval()
    sizes = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda _m, _i, out, name=name: sizes.__setitem__(name, tuple(out.shape[1:])))
        for name in ["conv1", "pool1", "conv2", "pool2", "inception3b", "pool3", "inception4e", "pool4", "inception5b"]]
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    for hook in hooks:
        hook.remove()
    assert sizes == {
        "conv1": (64, 112, 112), "pool1": (64, 56, 56), "conv2": (192, 56, 56), "pool2": (192, 28, 28),
        "inception3b": (480, 28, 28), "pool3": (480, 14, 14), "inception4e": (832, 14, 14),
        "pool4": (832, 7, 7), "inception5b": (1024, 7, 7),
    }


def test_initialisation_follows_the_papers():
    vgg = create_model("vgg11", num_classes=10)
    fc = vgg.classifier[0]
    assert torch.all(fc.bias == 0)
    assert fc.weight.std().item() == pytest.approx(0.01, rel=0.05)
    conv = vgg.features[0]  # Kaiming fan-out: std = sqrt(2 / (out_channels * 3 * 3))
    assert conv.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)
    assert torch.all(conv.bias == 0)


def test_transform_input_needs_three_channels():
    with pytest.raises(ValueError, match="in_chans=3"):
        create_model("googlenet_tv", in_chans=1, transform_input=True)


def test_vgg_head_window_1_reads_a_1x1_map_once():
    # The default head pools to 7x7, so at 28 px the 1x1 map reaches the first FC layer as 49
    # copies (25088 inputs); head_window=1 gives that layer the 512 channels once.
    wide = meta_model("vgg11_bn", num_classes=10, in_chans=1)
    narrow = meta_model("vgg11_bn", num_classes=10, in_chans=1, head_window=1)
    assert narrow.classifier[0].in_features == 512 and wide.classifier[0].in_features == 25088
    assert n_params(wide) - n_params(narrow) == (25088 - 512) * 4096
    assert narrow.dense_head().window == 1


def test_head_window_1_computes_the_7x7_head_with_its_49_copies_summed():
    # Same network, fewer multiply-adds: the 7x7 head on a 1x1 map equals a 1x1 head whose
    # first FC weights are the sum of the 49 positions of each channel.
    torch.manual_seed(0)
    wide = create_model("vgg11_bn", num_classes=10, in_chans=1).eval()
    narrow = create_model("vgg11_bn", num_classes=10, in_chans=1, head_window=1).eval()
    state = wide.state_dict()
    state["classifier.0.weight"] = state["classifier.0.weight"].view(4096, 512, 49).sum(-1)
    narrow.load_state_dict(state)
    images = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(narrow(images), wide(images), rtol=1e-4, atol=1e-5)


def test_training_on_a_1x1_map_sums_the_window_blocks_with_the_same_outputs_and_gradients():
    # In training, the default 7x7 head over a 1x1 map multiplies the sum of each channel's 49
    # weight blocks once instead of 49 copies; outputs and every gradient must be those of the
    # head as written (computed here by hand: avgpool, flatten, the classifier's layers).
    torch.manual_seed(0)
    model = create_model("vgg11", num_classes=10, in_chans=1, dropout=0.0).train()
    features = model.forward_features(torch.randn(4, 1, 28, 28)).detach()
    assert features.shape[-2:] == (1, 1)

    def outputs_and_gradients(head):
        model.zero_grad()
        out = head(features)
        out.square().sum().backward()
        return out.detach(), {name: p.grad.clone() for name, p in model.classifier.named_parameters()}

    fast, fast_grads = outputs_and_gradients(model.forward_head)
    written, written_grads = outputs_and_gradients(lambda x: model.classifier(torch.flatten(model.avgpool(x), 1)))
    torch.testing.assert_close(fast, written, rtol=1e-4, atol=1e-5)
    for name in written_grads:
        torch.testing.assert_close(fast_grads[name], written_grads[name], rtol=1e-4, atol=1e-6)
    fast_blocks = fast_grads["0.weight"].view(4096, 512, 49)
    assert torch.equal(fast_blocks[..., 0], fast_blocks[..., 48]) and fast_blocks.abs().sum() > 0
    # and it is the cheaper product: 512 inputs to the first FC layer, not 49 x 512
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model.forward_head(features)
    assert counter.get_total_flops() == 2 * 4 * (512 * 4096 + 4096 * 4096 + 4096 * 10)


def test_head_window_must_be_positive():
    with pytest.raises(ValueError, match="head_window must be at least 1"):
        meta_model("vgg11", head_window=0)
