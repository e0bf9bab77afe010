"""The VGG paper's scale jittering for photo datasets: shorter side rescaled to a random S in
[S_min, S_max], then a crop of the training size, on the device, seeded."""

from __future__ import annotations

import pytest
import torch

from classicnets.data.photo_augment import PhotoAugmentConfig, PhotoTransform, crop_flip_params
from classicnets.errors import UserError


def jitter_params(seed: int, height: int = 64, width: int = 64, crop: int = 32):
    config = PhotoAugmentConfig(scale_jitter=(32, 64), hflip=False, brightness=0, contrast=0, saturation=0)
    generator = torch.Generator().manual_seed(seed)
    return crop_flip_params(4096, height, width, config, generator, torch.device("cpu"), crop_size=crop)


def test_crops_keep_crop_size_over_s_of_the_shorter_side():
    w, h, cx, cy = jitter_params(0).unbind(1)
    sides = 32 / w  # the S each crop implies
    assert torch.allclose(sides, sides.round(), atol=1e-3)  # S is a whole number of pixels
    assert sides.min().round() == 32 and sides.max().round() == 64  # both ends of [S_min, S_max] drawn
    assert torch.equal(w, h)  # isotropic: a square image keeps the same fraction both ways
    assert (cx.abs() <= 1 - w + 1e-6).all() and (cy.abs() <= 1 - h + 1e-6).all()  # inside the image


def test_a_wide_image_keeps_less_of_its_longer_side():
    w, h, _, _ = jitter_params(1, height=40, width=80).unbind(1)
    assert torch.allclose(w * 2, h)


def test_seeded_like_the_other_augmentations():
    assert torch.equal(jitter_params(3), jitter_params(3))
    assert not torch.equal(jitter_params(3), jitter_params(4))


def test_the_transform_gives_training_size_batches():
    transform = PhotoTransform([0.5] * 3, [0.25] * 3, 32,
                               PhotoAugmentConfig(scale_jitter=(36, 48), brightness=0, contrast=0, saturation=0))
    images = torch.randint(0, 256, (5, 3, 48, 48), dtype=torch.uint8)
    out = transform(images, torch.Generator().manual_seed(0))
    assert out.shape == (5, 3, 32, 32) and torch.isfinite(out).all()


@pytest.mark.parametrize("value", [(64, 32), (0, 10), (1.5, 3), "big"])
def test_bad_ranges_are_refused(value):
    with pytest.raises(UserError, match="scale_jitter"):
        PhotoAugmentConfig(scale_jitter=value)


def test_it_round_trips_through_a_recipe_dict():
    config = PhotoAugmentConfig.from_dict({"scale_jitter": [256, 512]})
    assert config.scale_jitter == (256, 512) and config.to_dict()["scale_jitter"] == [256, 512]
