"""Test-time augmentation: the multi-crop and multi-scale testing of the two papers.

Every mode turns one batch of images into several *views*, runs the network on each
and averages the soft-max class posteriors, as both papers do ("the soft-max class
posteriors of the original and flipped images are averaged", VGG section 3.2;
"softmax probabilities are averaged over multiple crops", GoogLeNet section 7).

* ``none``: the image as it is (optionally rescaled, see ``scale``).
* ``flip``: the image and its mirror image.
* ``10crop``: the image is rescaled by ``crop_scale`` (256/224 by default, the usual
  "resize to 256, crop 224"), then its four corner crops and its centre crop, at the
  network's training size, and the mirror image of each (AlexNet's and the VGG paper's
  multi-crop, torchvision's ``TenCrop`` order).
* ``multiscale``: the whole image at several scales and their mirror images. The VGG
  paper tests a net trained at scale S at Q = {S - 32, S, S + 32}, which for S = 256 are
  the relative ``scales`` 0.875, 1, 1.125 used by default. The network sees images
  larger and smaller than its training size: VGG's adaptive pooling (or its dense form,
  :mod:`classicnets.analysis.dense`) and GoogLeNet's global pooling accept any size.

Views are made from normalised image batches on the device. Resizing is bilinear,
which commutes with per-channel normalisation, so resizing a normalised batch equals
normalising a resized one. Batches should arrive at :meth:`TTAConfig.input_size`, the
largest size any view needs, so that views are only ever cropped or shrunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

TTA_MODES = ("none", "flip", "10crop", "multiscale")
VGG_MULTISCALE = (0.875, 1.0, 1.125)  # Q = S - 32, S, S + 32 at S = 256
CROP_SCALE = 256 / 224  # rescale, then crop the training size: 87.5% of the side


@dataclass(frozen=True)
class TTAConfig:
    mode: str = "none"
    image_size: int = 224  # the size the network was trained at; crops have this size
    scale: float = 1.0  # "none" and "flip": the whole image at round(image_size * scale)
    scales: tuple[float, ...] = VGG_MULTISCALE  # "multiscale"
    crop_scale: float = CROP_SCALE  # "10crop": the image side before cropping, relative to image_size

    def __post_init__(self) -> None:
        if self.mode not in TTA_MODES:
            raise UserError(f"unknown test-time augmentation {self.mode!r}; choose one of {', '.join(TTA_MODES)}.")
        if self.image_size < 1:
            raise UserError(f"image size must be at least 1, got {self.image_size}.")
        if not self.scales or not all(s > 0 for s in (self.scale, self.crop_scale, *self.scales)):
            raise UserError("test scales must be positive numbers.")
        if self.crop_scale < 1:
            raise UserError(f"the 10-crop rescale factor must be at least 1, got {self.crop_scale}.")

    @property
    def num_views(self) -> int:
        return {"none": 1, "flip": 2, "10crop": 10, "multiscale": 2 * len(self.scales)}[self.mode]

    def input_size(self) -> int:
        """The side the image batches should have: the largest any view needs."""
        if self.mode == "10crop":
            return scaled_size(self.image_size, self.crop_scale)
        if self.mode == "multiscale":
            return scaled_size(self.image_size, max(self.scales))
        return scaled_size(self.image_size, self.scale)

    def views(self, images: torch.Tensor) -> Iterator[torch.Tensor]:
        """The batches the network sees for one batch of ``images`` ``[N, C, H, W]``."""
        if self.mode == "10crop":
            source = resize_square(images, self.input_size())
            yield from ten_crop(source, self.image_size).unbind(0)
        elif self.mode == "multiscale":
            for scale in self.scales:
                scaled = resize_square(images, scaled_size(self.image_size, scale))
                yield scaled
                yield scaled.flip(-1)
        else:
            whole = resize_square(images, self.input_size())
            yield whole
            if self.mode == "flip":
                yield whole.flip(-1)

    def describe(self) -> str:
        if self.mode == "10crop":
            return f"10-crop ({self.image_size} px crops of the image at {self.input_size()} px, and mirrors)"
        if self.mode == "multiscale":
            sizes = ", ".join(str(scaled_size(self.image_size, s)) for s in self.scales)
            return f"multi-scale ({sizes} px, and mirrors)"
        flip = " and its mirror" if self.mode == "flip" else ""
        return f"the whole image at {self.input_size()} px{flip}"


def scaled_size(image_size: int, scale: float) -> int:
    return max(1, round(image_size * scale))


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize to ``size`` x ``size``; antialiased when shrinking, to avoid aliasing."""
    if images.shape[-2:] == (size, size):
        return images
    shrinking = size < min(images.shape[-2:])
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)


def five_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Top-left, top-right, bottom-left, bottom-right and centre crops: ``[5, N, C, size, size]``."""
    height, width = images.shape[-2:]
    if size > min(height, width):
        raise ValueError(f"crop size {size} exceeds the image size {height}x{width}")
    top, left = (height - size) // 2, (width - size) // 2
    corners = ((0, 0), (0, width - size), (height - size, 0), (height - size, width - size), (top, left))
    return torch.stack([images[..., y:y + size, x:x + size] for y, x in corners])


def ten_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`five_crop` of the images, then of their mirror images: ``[10, N, C, size, size]``
    (torchvision's ``TenCrop`` order; cropping the mirror image also keeps an odd margin's
    centre crop where torchvision puts it)."""
    return torch.cat([five_crop(images, size), five_crop(images.flip(-1), size)])


def logits_of(output: torch.Tensor | tuple) -> torch.Tensor:
    """The main logits of a forward pass (GoogLeNet may return a tuple with aux heads)."""
    return output[0] if isinstance(output, tuple) else output


@torch.no_grad()
def predict_proba(model: nn.Module, images: torch.Tensor, tta: TTAConfig) -> torch.Tensor:
    """Soft-max posteriors averaged over the views of ``tta``: ``[N, classes]``, float32."""
    total = None
    for view in tta.views(images):
        probs = logits_of(model(view)).float().softmax(dim=1)
        total = probs if total is None else total + probs
    return total / tta.num_views
