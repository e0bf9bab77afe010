"""Inside the network: feature maps per block, first-layer filters, image preparation."""

import re

import pytest
import torch
from PIL import Image

import classicnets
from classicnets.analysis.activations import (block_parts, capture_activations, first_conv, plot_activations,
                                              plot_filters, prepare_image, resolve_layers, strongest_channels)
from classicnets.errors import UserError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BRANCHES = ("branch1x1", "branch3x3", "branch5x5", "branch_pool")


@pytest.fixture(scope="module")
def googlenet() -> torch.nn.Module:
    torch.manual_seed(0)
    return classicnets.create_model("googlenet", num_classes=4, in_chans=1).eval()


def test_vgg_blocks_show_each_convolution_after_its_relu():
    with torch.device("meta"):
        model = classicnets.create_model("vgg16_bn", num_classes=2)
    parts = block_parts(model)
    assert list(parts) == ["block1", "block2", "block3", "block4", "block5"]
    assert [len(p) for p in parts.values()] == [2, 2, 3, 3, 3]  # VGG16's convs per block
    modules = dict(model.named_modules())
    assert all(isinstance(modules[name], torch.nn.ReLU) for names in parts.values() for name in names)
    assert parts["block1"] == ["features.2", "features.5"]  # conv, BN, ReLU, conv, BN, ReLU


def test_googlenet_blocks_show_the_inception_branches():
    with torch.device("meta"):
        model = classicnets.create_model("googlenet_paper", num_classes=2)
    parts = block_parts(model)
    assert parts["stem1"] == ["conv1"] and parts["stem2"] == ["conv2_reduce", "conv2"]
    inceptions = [name for name in parts if name.startswith("inception")]
    assert len(inceptions) == 9
    assert parts["inception4a"] == [f"inception4a.{b}" for b in BRANCHES]
    assert "aux1" not in parts and "head" not in parts


def test_resolve_layers_takes_blocks_and_module_names(googlenet):
    resolved = resolve_layers(googlenet, ["inception3a", "conv1", "inception4a.branch3x3"])
    assert resolved == {"inception3a": [f"inception3a.{b}" for b in BRANCHES], "conv1": ["conv1"],
                        "inception4a.branch3x3": ["inception4a.branch3x3"]}
    with pytest.raises(UserError, match="no block or layer named 'block9'"):
        resolve_layers(googlenet, ["block9"])


def test_captured_branches_concatenate_to_the_inception_output(googlenet):
    x = torch.randn(1, 1, 64, 64)
    names = [f"inception3a.{b}" for b in BRANCHES] + ["inception3a"]
    captured = capture_activations(googlenet, x, names)
    assert list(captured) == names
    assert [captured[n].shape[1] for n in names[:4]] == [64, 128, 32, 32]  # Table 1, row 3a
    torch.testing.assert_close(torch.cat([captured[n] for n in names[:4]], dim=1), captured["inception3a"])
    assert not googlenet._forward_hooks and not googlenet.inception3a._forward_hooks  # hooks removed


@pytest.mark.parametrize("layer, shape", [("fc", "[1, 4]"), ("dropout", "[1, 1024]")])
def test_outputs_that_are_not_feature_maps_are_refused(googlenet, layer, shape):
    x = torch.randn(1, 1, 64, 64)
    with pytest.raises(UserError, match=re.escape(f"layer {layer} outputs {shape}, not a feature map; "
                                                  f"choose a convolutional block or layer.")):
        capture_activations(googlenet, x, ["conv1", layer])


def test_vgg_classifier_layers_are_refused_too():
    with torch.device("meta"):  # shapes are all the check needs; VGG's classifier is large
        model = classicnets.create_model("vgg11", num_classes=2, in_chans=1)
        x = torch.randn(1, 1, 32, 32)
    with pytest.raises(UserError, match=re.escape("layer classifier.0 outputs [1, 4096], not a feature map")):
        capture_activations(model, x, ["classifier.0"])


def test_vgg_relu_capture_is_not_changed_by_later_layers():
    torch.manual_seed(0)
    model = classicnets.create_model("vgg11", num_classes=2, in_chans=1).eval()
    x = torch.randn(1, 1, 32, 32)
    captured = capture_activations(model, x, ["features.1"])  # the in-place ReLU after conv 1
    with torch.no_grad():
        expected = torch.relu(model.features[0](x))
    torch.testing.assert_close(captured["features.1"], expected)


def test_strongest_channels_orders_by_mean_activation():
    maps = torch.zeros(4, 2, 2)
    maps[2] += 3
    maps[0] += 1
    maps[3] += 2
    assert strongest_channels(maps, 3).tolist() == [2, 3, 0]


def test_plots_are_written(googlenet, tmp_path):
    x = torch.randn(1, 1, 64, 64)
    captured = capture_activations(googlenet, x, ["conv1", "inception4a.branch5x5"])
    activation_png = plot_activations(tmp_path / "maps.png", x, captured, [0.5], [0.25], "test", channels=4)
    filters_png = plot_filters(tmp_path / "filters.png", googlenet, "googlenet")
    for path in (activation_png, filters_png):
        assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 5000


def test_first_conv_is_the_network_input_layer(googlenet):
    assert first_conv(googlenet) is googlenet.conv1.conv
    assert first_conv(googlenet).weight.shape == (64, 1, 7, 7)


def test_prepare_image_follows_the_run_preprocessing(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (60, 40), (255, 0, 0)).save(path)  # pure red, wider than tall
    metadata = {"image_size": 16, "in_chans": 1, "mean": [0.5], "std": [0.25]}
    image = prepare_image(path, metadata)
    assert image.shape == (1, 1, 16, 16)
    luma = round(0.299 * 255) / 255  # grey value of pure red
    torch.testing.assert_close(image, torch.full_like(image, (luma - 0.5) / 0.25), rtol=0, atol=1e-5)


def test_prepare_image_errors(tmp_path):
    metadata = {"image_size": 16, "in_chans": 3, "mean": [0.5] * 3, "std": [0.25] * 3}
    with pytest.raises(UserError, match="does not exist"):
        prepare_image(tmp_path / "missing.jpg", metadata)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(UserError, match="cannot read image"):
        prepare_image(text, metadata)
