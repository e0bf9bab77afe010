"""Batched augmentation, normalisation and resizing, run on whatever device holds the batch.

Every random draw takes an explicit ``torch.Generator`` and the draws happen in a fixed
order whatever their values, so one seed per epoch reproduces a whole epoch exactly.
No function loops over the samples of a batch: per-sample randomness becomes index
tensors and masks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import UserError

# torchvision's RandomErasing defaults (Zhong et al., 2017): the box covers 2%-33% of the
# image and its aspect ratio h/w is log-uniform in [0.3, 3.3].
ERASE_AREA = (0.02, 0.33)
ERASE_ASPECT = (0.3, 3.3)

# The augmentation options of the small grey datasets (Fashion-MNIST) and their defaults:
# the one place they are defined; configuration files and flags take them from here.
AUGMENT_DEFAULTS = {
    "crop_padding": 4,  # random crop with this zero padding (0 = off), at the native size
    "hflip": True,  # random horizontal flip, p = 0.5
    "erasing": 0.0,  # random-erasing probability (0 = off); erases with 0 after normalisation
}
AUGMENT_KEYS = tuple(AUGMENT_DEFAULTS)


@dataclass
class AugmentConfig:
    """Training augmentation. ``build_data(augment=None)`` trains without any.
    Options and defaults: :data:`AUGMENT_DEFAULTS`."""

    crop_padding: int = AUGMENT_DEFAULTS["crop_padding"]
    hflip: bool = AUGMENT_DEFAULTS["hflip"]
    erasing: float = AUGMENT_DEFAULTS["erasing"]

    def __post_init__(self) -> None:
        if isinstance(self.crop_padding, bool) or not isinstance(self.crop_padding, int) or self.crop_padding < 0:
            raise UserError(f"augment crop_padding must be an integer of 0 or more, got {self.crop_padding!r}.")
        if not isinstance(self.hflip, bool):
            raise UserError(f"augment hflip must be true or false, got {self.hflip!r}.")
        if isinstance(self.erasing, bool) or not isinstance(self.erasing, (int, float)) or not 0 <= self.erasing <= 1:
            raise UserError(f"augment erasing must be a probability in [0, 1], got {self.erasing!r}.")
        self.erasing = float(self.erasing)

    @classmethod
    def from_dict(cls, d: dict) -> AugmentConfig:
        if not isinstance(d, dict):
            raise UserError(f"augment must be a mapping of option names to values, got {d!r}.")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise UserError(f"unknown augment option(s) {', '.join(map(str, unknown))}; known: {', '.join(known)}.")
        return cls(**d)

    @classmethod
    def coerce(cls, augment: Any) -> AugmentConfig | None:
        """What ``build_data(augment=...)`` takes: None (no augmentation), a config, or its dict form."""
        if augment is None or isinstance(augment, cls):
            return augment
        return cls.from_dict(augment)

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(crop_padding=0, hflip=False, erasing=0.0)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.hflip or self.erasing > 0


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad every side by ``padding``, then cut one randomly placed window per sample.

    Equivalent to translating each image by up to ``padding`` pixels with zero fill. The
    window is read with one advanced-indexing gather built from per-sample row and column
    offsets. Works on any dtype; the output has the input's shape.
    """
    if padding == 0:
        return images
    batch, channels, height, width = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=device)
    rows = top[:, None] + torch.arange(height, device=device)  # [B, H]
    cols = left[:, None] + torch.arange(width, device=device)  # [B, W]
    return padded[
        torch.arange(batch, device=device)[:, None, None, None],
        torch.arange(channels, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def random_hflip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each sample left-right with probability 0.5."""
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def random_erasing(images: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """With ``probability`` per sample, set one random rectangle (all channels) to 0.

    Box area and aspect follow :data:`ERASE_AREA` and :data:`ERASE_ASPECT`. torchvision
    re-draws a box that does not fit the image; here it is clamped to the image instead,
    which keeps the whole batch one set of tensor operations.
    """
    if probability == 0:
        return images
    batch, _, height, width = images.shape
    device = images.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator, device=device)

    erase = torch.rand(batch, generator=generator, device=device) < probability
    area = height * width * uniform(*ERASE_AREA)
    aspect = torch.exp(uniform(math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1])))
    box_h = torch.sqrt(area * aspect).round().clamp(1, height)
    box_w = torch.sqrt(area / aspect).round().clamp(1, width)
    top = (uniform(0, 1) * (height - box_h + 1)).floor()
    left = (uniform(0, 1) * (width - box_w + 1)).floor()

    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])  # [B, H]
    in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])  # [B, W]
    mask = in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None]  # [B, H, W]
    return images.masked_fill(mask[:, None], 0.0)


def resize(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Bilinear resize to ``image_size`` x ``image_size``.

    Antialiasing stays off: it only changes downscaling, and the usual use here is
    upscaling 28 px images to 32-224 px, where it would only cost time.
    """
    if images.shape[-2:] == (image_size, image_size):
        return images
    return F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=False)


def check_transform_call(images: torch.Tensor, augment, generator: torch.Generator | None):
    """What every batch transform checks first; returns its ``augment`` (None: not augmenting)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected a uint8 batch, got {images.dtype}")
    if augment is not None and generator is None:
        raise ValueError("an augmenting transform needs a generator")
    return augment


def normalisation_constants(
    mean: list[float], std: list[float], device: torch.device | str, pixel_scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)``, each ``[1, C, 1, 1]`` float32, with ``(x / pixel_scale - mean) / std
    == x * scale + shift``.

    Computed in float64 and rounded once, so the folded multiply-add matches the two-step
    formula to float32 precision. ``pixel_scale=255`` normalises raw uint8 pixels directly.
    """
    mean64 = torch.tensor(mean, dtype=torch.float64)
    std64 = torch.tensor(std, dtype=torch.float64)
    scale = 1 / (pixel_scale * std64)
    shift = -mean64 / std64
    return (scale.to(device, torch.float32).view(1, -1, 1, 1), shift.to(device, torch.float32).view(1, -1, 1, 1))


class BatchTransform:
    """uint8 batch ``[B, C, H, W]`` at native size -> normalised float32 ``[B, C, S, S]``.

    Order: crop and flip on the uint8 pixels (cheapest, and the crop's zero padding is
    black as in torchvision's RandomCrop), normalise, resize to ``image_size``, then
    random erasing so that erased pixels are exactly 0 in the model's input.
    """

    def __init__(
        self,
        mean: list[float],
        std: list[float],
        image_size: int,
        augment: AugmentConfig | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        # (x / 255 - mean) / std folded into one multiply-add on the uint8 pixels.
        self.scale, self.shift = normalisation_constants(mean, std, device, pixel_scale=255)
        self.image_size = image_size
        self.augment = augment if augment is not None and augment.enabled else None

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        augment = check_transform_call(images, self.augment, generator)
        if augment is not None:
            images = random_crop(images, augment.crop_padding, generator)
            if augment.hflip:
                images = random_hflip(images, generator)
        x = torch.addcmul(self.shift, images.to(torch.float32), self.scale)
        x = resize(x, self.image_size)
        if augment is not None:
            x = random_erasing(x, augment.erasing, generator)
        return x
