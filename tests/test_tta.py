"""Test-time augmentation: crops in the right places, posteriors averaged over views."""

import pytest
import torch
from torch import nn

import classicnets
from classicnets.analysis.tta import TTAConfig, five_crop, predict_proba, resize_square, ten_crop
from classicnets.errors import UserError


def numbered_images(n: int = 2, channels: int = 1, size: int = 8) -> torch.Tensor:
    """Every pixel holds a distinct value, so a crop's position can be read off its values."""
    return torch.arange(n * channels * size * size, dtype=torch.float32).view(n, channels, size, size)


def test_five_crop_takes_the_corners_and_the_centre():
    x = numbered_images(size=8)
    crops = five_crop(x, 5)
    assert crops.shape == (5, 2, 1, 5, 5)
    torch.testing.assert_close(crops[0], x[..., :5, :5])  # top left
    torch.testing.assert_close(crops[1], x[..., :5, 3:])  # top right
    torch.testing.assert_close(crops[2], x[..., 3:, :5])  # bottom left
    torch.testing.assert_close(crops[3], x[..., 3:, 3:])  # bottom right
    torch.testing.assert_close(crops[4], x[..., 1:6, 1:6])  # centre: (8 - 5) // 2 = 1


def test_ten_crop_adds_the_crops_of_the_mirror_image_in_torchvision_order():
    from torchvision.transforms.functional import ten_crop as torchvision_ten_crop

    for size in (10, 11):  # an even and an odd margin
        x = numbered_images(n=3, channels=2, size=size)
        crops = ten_crop(x, 6)
        assert crops.shape == (10, 3, 2, 6, 6)
        torch.testing.assert_close(crops[5:], five_crop(x.flip(-1), 6))
        for own, theirs in zip(crops, torchvision_ten_crop(x, [6, 6])):
            torch.testing.assert_close(own, theirs)


def test_crop_larger_than_the_image_is_refused():
    with pytest.raises(ValueError, match="exceeds"):
        five_crop(numbered_images(size=4), 5)


class MeanPixel(nn.Module):
    """Two-class logits from the mean pixel, so every view gives a known posterior."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([m, -m], dim=1)


def test_ten_crop_prediction_averages_the_softmax_of_each_view():
    torch.manual_seed(0)
    tta = TTAConfig("10crop", image_size=32)
    assert tta.input_size() == 37 and tta.num_views == 10  # 32 * 256 / 224 = 36.6
    x = torch.randn(4, 1, 37, 37)
    model = MeanPixel()
    expected = torch.stack([model(view).softmax(dim=1) for view in ten_crop(x, 32)]).mean(dim=0)
    probs = predict_proba(model, x, tta)
    assert probs.shape == (4, 2)
    torch.testing.assert_close(probs, expected)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(4))
    # averaging posteriors is not averaging logits: the views disagree, so the two differ
    logit_average = torch.stack([model(view) for view in ten_crop(x, 32)]).mean(dim=0).softmax(dim=1)
    assert (probs - logit_average).abs().max() > 1e-6


def test_flip_views_and_their_average():
    x = torch.randn(3, 1, 16, 16)
    tta = TTAConfig("flip", image_size=16)
    views = list(tta.views(x))
    assert len(views) == 2 and views[0] is x
    torch.testing.assert_close(views[1], x.flip(-1))


def test_multiscale_views_have_the_papers_relative_sizes():
    tta = TTAConfig("multiscale", image_size=256)
    assert tta.input_size() == 288  # the largest scale: S + 32 for S = 256
    x = torch.randn(2, 3, 288, 288)
    sizes = [tuple(view.shape[-2:]) for view in tta.views(x)]
    assert sizes == [(224, 224)] * 2 + [(256, 256)] * 2 + [(288, 288)] * 2
    views = list(tta.views(x))
    torch.testing.assert_close(views[5], x.flip(-1))


def test_none_with_a_scale_resizes_the_whole_image():
    tta = TTAConfig("none", image_size=32, scale=1.5)
    assert tta.input_size() == 48
    x = torch.randn(1, 1, 32, 32)
    (view,) = tta.views(x)
    assert view.shape[-2:] == (48, 48)


def test_resizing_commutes_with_normalisation():
    # the views are made from normalised batches; bilinear resizing is affine-equivariant
    pixels = torch.rand(2, 3, 20, 20)
    mean = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)
    std = torch.tensor([0.3, 0.2, 0.1]).view(1, 3, 1, 1)
    for size in (13, 27):
        torch.testing.assert_close(resize_square((pixels - mean) / std, size),
                                   (resize_square(pixels, size) - mean) / std, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def googlenet() -> nn.Module:
    torch.manual_seed(0)
    return classicnets.create_model("googlenet", num_classes=3, in_chans=1).eval()


@pytest.mark.parametrize("mode", ["none", "flip", "10crop", "multiscale"])
def test_every_mode_runs_a_real_network(mode, googlenet):
    model = googlenet
    tta = TTAConfig(mode, image_size=32)
    x = torch.randn(2, 1, tta.input_size(), tta.input_size())
    probs = predict_proba(model, x, tta)
    assert probs.shape == (2, 3)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "12crop"}, "unknown test-time augmentation"),
    ({"mode": "multiscale", "scales": ()}, "positive"),
    ({"mode": "none", "scale": 0.0}, "positive"),
    ({"mode": "10crop", "crop_scale": 0.9}, "at least 1"),
])
def test_bad_settings_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        TTAConfig(image_size=32, **kwargs)
