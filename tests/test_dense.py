"""Dense evaluation: the FC layers as convolutions compute the same function."""

import pytest
import torch
from torch import nn

import classicnets
from classicnets.analysis.dense import DenseGoogLeNet, DenseVGG, linear_to_conv, to_dense, vgg_feature_size
from classicnets.models.vgg import VGG

# A real VGG with a thin body: 224 px -> 7x7x512 features for ~30 M multiply-adds, so
# the head (the part dense evaluation converts) is exercised at full size cheaply.
THIN_BODY = [8, "M", "M", "M", 512, "M", "M"]


def thin_vgg(num_classes: int = 5, head_std: float | None = None) -> VGG:
    """``head_std`` replaces the paper's N(0, 0.01) FC weights to get larger logits."""
    torch.manual_seed(0)
    model = VGG(THIN_BODY, num_classes=num_classes)
    if head_std is not None:
        for layer in model.classifier:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, 0.0, head_std)
                nn.init.normal_(layer.bias, 0.0, head_std)
    return model.eval()


# Building the 100 M-parameter head dominates these tests, so each variant is built once.
@pytest.fixture(scope="module")
def thin() -> VGG:
    return thin_vgg()


@pytest.fixture(scope="module")
def thin64() -> VGG:
    return thin_vgg(head_std=0.05).double()


def test_linear_to_conv_matches_linear_on_a_window():
    torch.manual_seed(0)
    linear = nn.Linear(4 * 3 * 3, 6)
    conv = linear_to_conv(linear, in_channels=4, kernel_size=3)
    window = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(conv(window).flatten(1), linear(window.flatten(1)), rtol=0, atol=1e-6)


def test_linear_to_conv_refuses_a_window_of_the_wrong_size():
    with pytest.raises(ValueError, match="cannot read"):
        linear_to_conv(nn.Linear(10, 2), in_channels=4, kernel_size=3)


def test_dense_vgg_equals_the_original_at_224(thin):
    model = thin
    x = torch.randn(3, 3, 224, 224)
    dense = to_dense(model)
    assert isinstance(dense, DenseVGG)
    with torch.no_grad():
        original = model(x)
        converted = dense(x)
        score_map = dense.score_map(x)
    assert score_map.shape == (3, 5, 1, 1)  # 7x7 features: one window
    # A wrongly ordered reshape would move the logits by about their own size.
    assert original.abs().max() > 0.05
    assert (original - converted).abs().max().item() <= 1e-5


def test_dense_vgg_is_the_same_function_in_float64(thin64):
    # In float32 only the summation order differs; in float64 that vanishes too,
    # even with large logits.
    model = thin64
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        original = model(x)
        converted = to_dense(model)(x)
    assert original.abs().max() > 1
    assert (original - converted).abs().max().item() <= 1e-10


def test_dense_vgg16_bn_equals_the_original_at_224():
    torch.manual_seed(0)
    model = classicnets.create_model("vgg16_bn", num_classes=7).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        difference = (model(x) - to_dense(model)(x)).abs().max().item()
    assert difference <= 1e-5


def test_dense_vgg_slides_the_classifier_over_a_larger_image(thin64):
    # 288 px -> 9x9 features -> a 3x3 score map; each position is the original classifier
    # applied to one 7x7 window of the feature map.
    model = thin64
    x = torch.randn(2, 3, 288, 288, dtype=torch.float64)
    dense = to_dense(model)
    with torch.no_grad():
        features = model.features(x)
        score_map = dense.score_map(x)
        expected = torch.stack([
            torch.stack([model.classifier(features[:, :, i:i + 7, j:j + 7].flatten(1)) for j in range(3)], dim=-1)
            for i in range(3)
        ], dim=-2)
        logits = dense(x)
    assert features.shape[-2:] == (9, 9)
    assert score_map.shape == (2, 5, 3, 3)
    torch.testing.assert_close(score_map, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(logits, expected.mean(dim=(2, 3)), rtol=0, atol=1e-10)
    # and this is a different function from the original's adaptive pooling to 7x7
    assert (logits - model(x)).abs().max() > 1e-3


def test_dense_vgg_falls_back_to_the_pooled_path_on_small_maps(thin):
    model = thin
    x = torch.randn(2, 3, 32, 32)  # 1x1 features: no room for a 7x7 window
    dense = to_dense(model)
    with torch.no_grad():
        assert model.features(x).shape[-2:] == (1, 1)
        assert dense.score_map(x).shape == (2, 5, 1, 1)
        assert (dense(x) - model(x)).abs().max().item() <= 1e-6


def test_dense_vgg_shares_the_body_and_copies_the_head(thin):
    model = thin
    dense = to_dense(model)
    assert dense.features is model.features
    conv7 = dense.head[0]
    assert isinstance(conv7, nn.Conv2d) and conv7.kernel_size == (7, 7) and conv7.in_channels == 512
    assert [m.kernel_size for m in dense.head if isinstance(m, nn.Conv2d)] == [(7, 7), (1, 1), (1, 1)]


def test_googlenet_score_map_averages_to_its_logits():
    size = 96  # a 3x3 final map
    torch.manual_seed(0)
    model = classicnets.create_model("googlenet", num_classes=6, in_chans=1).eval()
    nn.init.normal_(model.fc.weight, 0.0, 1.0)  # O(1) logits
    x = torch.randn(2, 1, size, size)
    dense = to_dense(model)
    assert isinstance(dense, DenseGoogLeNet)
    with torch.no_grad():
        score_map = dense.score_map(x)
        logits = model(x)
        torch.testing.assert_close(dense(x), logits, rtol=0, atol=0)
    assert score_map.shape[:2] == (2, 6) and score_map.shape[-1] == size // 32
    torch.testing.assert_close(score_map.mean(dim=(2, 3)), logits, rtol=0, atol=1e-5)


def test_to_dense_refuses_other_networks():
    with pytest.raises(TypeError, match="VGG or GoogLeNet"):
        to_dense(nn.Linear(2, 2))


@pytest.mark.parametrize("size, expected", [(224, 7), (256, 8), (288, 9), (32, 1), (28, 1), (193, 7), (192, 6)])
def test_vgg_feature_size_matches_a_forward_pass(size, expected):
    with torch.device("meta"):
        model = classicnets.create_model("vgg11", num_classes=2)
        features = model.features(torch.zeros(1, 3, size, size))
    assert vgg_feature_size(model, size) == expected == features.shape[-1]
