"""Photo augmentation on whole batches, on the device that trains.

Random-resized-crop and horizontal flip are one affine resampling per batch: each
sample gets its own affine map (crop size, position and mirror sign), which becomes a
sampling grid at the output size (what ``F.affine_grid`` would build, made directly
since the maps have no rotation) and ``F.grid_sample`` reads all crops at once,
resizing them in the same step. Colour jitter is per-sample factors
broadcast over the batch. Nothing loops over samples, so a batch costs a few kernels.

Every draw comes from the generator the batcher passes in, seeded by (seed, epoch, rank),
so an epoch's augmentation is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from ..errors import UserError
from .augment import AugmentConfig, check_transform_call, normalisation_constants, random_erasing

# ITU-R 601-2 luma, the weights torchvision's rgb_to_grayscale uses.
LUMA = (0.299, 0.587, 0.114)


# Photos at or under this size (px) get the milder default augmentation below.
SMALL_IMAGE = 64
SMALL_IMAGE_AUGMENT: dict[str, Any] = {"scale": (0.5, 1.0), "brightness": 0.1, "contrast": 0.1, "saturation": 0.1}


def small_image_options() -> dict[str, Any]:
    """:data:`SMALL_IMAGE_AUGMENT` as a recipe writes it (ranges as lists)."""
    return {name: list(value) if isinstance(value, tuple) else value for name, value in SMALL_IMAGE_AUGMENT.items()}


@dataclass
class PhotoAugmentConfig:
    """Training augmentation for photos (``build_data(augment=...)`` of a photo dataset)."""

    scale: tuple[float, float] = (0.25, 1.0)  # random-resized-crop: fraction of the image area kept
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio w/h, drawn log-uniformly (the paper's)
    hflip: bool = True  # mirror with p = 0.5
    brightness: float = 0.4  # multiply by a factor in [1 - b, 1 + b]
    contrast: float = 0.4  # blend with the image's mean grey level, factor in [1 - c, 1 + c]
    saturation: float = 0.4  # blend with the grey image, factor in [1 - s, 1 + s]
    erasing: float = 0.0  # random-erasing probability, after normalisation, erases with 0
    # The VGG paper's scale jittering ("multi-scale training", section 3.1): each image is
    # rescaled isotropically so that its shorter side is a random S in [S_min, S_max] px, then a
    # crop of the training size is taken at a random place. Replaces the random-resized crop.
    scale_jitter: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.scale = _pair("scale", self.scale)
        self.ratio = _pair("ratio", self.ratio)
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise UserError(f"augment scale must be two fractions 0 < low <= high <= 1, got {list(self.scale)}.")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise UserError(f"augment ratio must be two positive numbers low <= high, got {list(self.ratio)}.")
        if self.scale_jitter is not None:
            low, high = _pair("scale_jitter", self.scale_jitter)
            if not (low.is_integer() and high.is_integer() and 1 <= low <= high <= 8192):
                raise UserError(f"augment scale_jitter must be two whole pixel sizes 1 <= S_min <= S_max <= 8192, "
                                f"got {list(self.scale_jitter)}.")
            self.scale_jitter = (int(low), int(high))
        if not isinstance(self.hflip, bool):
            raise UserError(f"augment hflip must be true or false, got {self.hflip!r}.")
        for name in ("brightness", "contrast", "saturation", "erasing"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise UserError(f"augment {name} must be a number in [0, 1], got {value!r}.")
            setattr(self, name, float(value))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PhotoAugmentConfig":
        if not isinstance(values, Mapping):
            raise UserError(f"augment must be a mapping of option names to values, got {values!r}.")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserError(f"unknown photo augment option(s) {', '.join(map(str, unknown))}; "
                            f"known: {', '.join(known)}.")
        return cls(**values)

    @classmethod
    def from_basic(cls, basic: Any) -> "PhotoAugmentConfig":
        """From the Fashion-MNIST :class:`~classicnets.data.AugmentConfig`: its flip and erasing
        carry over; its padded crop becomes random-resized-crop and colour jitter (on if it was on)."""
        if basic.crop_padding > 0:
            return cls(hflip=basic.hflip, erasing=basic.erasing)
        return cls(scale=(1.0, 1.0), hflip=basic.hflip, brightness=0.0, contrast=0.0, saturation=0.0,
                   erasing=basic.erasing)

    @classmethod
    def coerce(cls, augment: Any) -> "PhotoAugmentConfig | None":
        """What ``build_data(augment=...)`` takes for photos: None (no augmentation), a config, its
        dict form, or the Fashion-MNIST :class:`~classicnets.data.AugmentConfig` (see :meth:`from_basic`)."""
        if augment is None or isinstance(augment, cls):
            return augment
        if isinstance(augment, Mapping):
            return cls.from_dict(augment)
        if isinstance(augment, AugmentConfig):
            return cls.from_basic(augment)
        raise UserError(f"augment must be a PhotoAugmentConfig or a mapping, got {augment!r}.")

    @classmethod
    def for_image_size(cls, image_size: int) -> dict[str, Any]:
        """The default options at ``image_size`` px: the paper's strength above
        :data:`SMALL_IMAGE`; at or below it, crops that keep more of the photo and milder
        colour jitter (:data:`SMALL_IMAGE_AUGMENT`), since a small image has little to spare."""
        options = cls().to_dict()
        if image_size <= SMALL_IMAGE:
            options |= small_image_options()
        return options

    @classmethod
    def size_rule(cls) -> str:
        """:meth:`for_image_size` in words, for ``--help``."""
        small = ", ".join(f"{name} {value}" for name, value in small_image_options().items())
        paper = cls()
        return (f"at {SMALL_IMAGE} px or less {small}; above, scale {list(paper.scale)}, brightness, contrast "
                f"and saturation {paper.brightness:g}; flip at every size")

    @classmethod
    def off(cls) -> "PhotoAugmentConfig":
        return cls(scale=(1.0, 1.0), hflip=False, brightness=0.0, contrast=0.0, saturation=0.0, erasing=0.0)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["scale"], values["ratio"] = list(self.scale), list(self.ratio)
        if self.scale_jitter is not None:
            values["scale_jitter"] = list(self.scale_jitter)
        return values

    @property
    def crops(self) -> bool:
        return self.scale != (1.0, 1.0) or self.scale_jitter is not None

    @property
    def jitters(self) -> bool:
        return self.brightness > 0 or self.contrast > 0 or self.saturation > 0

    @property
    def enabled(self) -> bool:
        return self.crops or self.hflip or self.jitters or self.erasing > 0


def _pair(name: str, value: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"augment {name} must be a pair of numbers [low, high], got {value!r}.") from None
    return low, high


def crop_flip_params(batch: int, height: int, width: int, config: PhotoAugmentConfig,
                     generator: torch.Generator, device: torch.device, crop_size: int | None = None) -> torch.Tensor:
    """Per-sample crop ``[B, 4]``: (w, h, cx, cy) in normalised coordinates.

    A crop keeps a fraction ``w`` of the width and ``h`` of the height, centred at
    ``(cx, cy)``; in ``affine_grid``'s coordinates (-1..1 across the image) an output
    point maps to ``x_in = w * x_out + cx``, ``y_in = h * y_out + cy``, and a mirror
    negates ``w``. Crops larger than the image in one direction are clamped to it
    (torchvision redraws them instead).
    """
    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator, device=device)

    if config.scale_jitter is not None:
        # Shorter side rescaled to S, then a crop_size square: it keeps crop_size / S of the
        # shorter side, and proportionally less of the longer one.
        shorter = min(height, width)
        side = uniform(config.scale_jitter[0], config.scale_jitter[1] + 1).floor()  # whole pixels, as the paper's S
        crop = float(crop_size if crop_size is not None else shorter)
        w = (crop * shorter / (side * width)).clamp(max=1.0)
        h = (crop * shorter / (side * height)).clamp(max=1.0)
        cx = uniform(-1, 1) * (1 - w)
        cy = uniform(-1, 1) * (1 - h)
    elif config.crops:
        area = uniform(*config.scale)
        aspect = torch.exp(uniform(math.log(config.ratio[0]), math.log(config.ratio[1])))
        w = torch.sqrt(area * aspect * height / width).clamp(max=1.0)
        h = torch.sqrt(area / aspect * width / height).clamp(max=1.0)
        cx = uniform(-1, 1) * (1 - w)
        cy = uniform(-1, 1) * (1 - h)
    else:
        w = h = torch.ones(batch, device=device)
        cx = cy = torch.zeros(batch, device=device)
    if config.hflip:
        mirror = torch.rand(batch, generator=generator, device=device) < 0.5
        w = torch.where(mirror, -w, w)
    return torch.stack([w, h, cx, cy], 1)


def crop_matrices(params: torch.Tensor) -> torch.Tensor:
    """The ``[B, 2, 3]`` affine matrices (output -> input) of :func:`crop_flip_params`."""
    w, h, cx, cy = params.unbind(1)
    zero = torch.zeros_like(w)
    return torch.stack([torch.stack([w, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)


def crop_grid(params: torch.Tensor, size: int) -> torch.Tensor:
    """``F.affine_grid(crop_matrices(params), [B, C, size, size], align_corners=False)``, built directly.

    The matrices have no rotation, so x depends on the column only and y on the row
    only: two broadcasts replace affine_grid's batched matrix product.
    """
    # Pixel centres of the output in affine_grid's align_corners=False coordinates.
    base = (torch.arange(size, device=params.device, dtype=params.dtype) * 2 + 1) / size - 1
    w, h, cx, cy = (p[:, None] for p in params.unbind(1))
    xs = (w * base + cx)[:, None, :].expand(-1, size, -1)
    ys = (h * base + cy)[:, :, None].expand(-1, -1, size)
    return torch.stack([xs, ys], dim=-1)


def colour_jitter(x: torch.Tensor, config: PhotoAugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation (in that order) on RGB in [0, 1], as one colour matrix.

    With per-sample factors b, c, s, the image's mean grey level m and luma weights l:
    brightness ``x -> b x``, contrast ``x -> c x + (1 - c) mean_grey``, saturation
    ``x -> s x + (1 - s) (l . x)``. All three are linear, so their composition is
    ``A x + t`` with ``A = c b (s I + (1 - s) 1 l^T)`` and ``t = (1 - c) b m``: one
    pass over the pixels instead of a dozen. The result is clamped once at the end
    (torchvision clamps after each step; the two differ only where a step saturates).
    """
    batch = x.shape[0]

    def factors(strength: float) -> torch.Tensor:
        draw = torch.rand(batch, generator=generator, device=x.device)
        return 1 - strength + 2 * strength * draw

    luma = torch.tensor(LUMA, device=x.device, dtype=x.dtype)
    ones = torch.ones(batch, device=x.device, dtype=x.dtype)
    b = factors(config.brightness) if config.brightness > 0 else ones
    c = factors(config.contrast) if config.contrast > 0 else ones
    s = factors(config.saturation) if config.saturation > 0 else ones
    eye = torch.eye(3, device=x.device, dtype=x.dtype)
    towards_grey = torch.ones(3, 1, device=x.device, dtype=x.dtype) * luma[None, :]  # (1 l^T)
    matrix = (c * b)[:, None, None] * (s[:, None, None] * eye + (1 - s)[:, None, None] * towards_grey)
    mean_grey = x.mean((2, 3)) @ luma  # [B]: the mean grey level before any change
    shift = ((1 - c) * b * mean_grey).view(batch, 1, 1, 1)
    return torch.einsum("bij,bjhw->bihw", matrix, x).add_(shift).clamp_(0, 1)


class PhotoTransform:
    """uint8 batch ``[B, 3, H, W]`` -> normalised float32 ``[B, 3, S, S]``, augmented or not.

    Plays the part of :class:`~classicnets.data.BatchTransform` in the batchers (they
    read ``.augment`` and call it with a generator). Order: crop+flip+resize in one
    resampling, colour jitter on [0, 1], normalisation, then random erasing so that
    erased pixels are exactly 0 in the model's input.
    """

    def __init__(self, mean: list[float], std: list[float], image_size: int,
                 augment: PhotoAugmentConfig | None = None, device: torch.device | str = "cpu") -> None:
        # Normalised after resampling and jitter, which work on [0, 1] pixels.
        self.inv_std, self.shift = normalisation_constants(mean, std, device)
        self.image_size = image_size
        self.augment = augment if augment is not None and augment.enabled else None

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        augment = check_transform_call(images, self.augment, generator)
        x = images.to(torch.float32).div_(255)
        if augment is not None and (augment.crops or augment.hflip):
            x = self._resample(x, augment, generator)
        else:
            x = self._resize(x)
        if augment is not None and augment.jitters:
            x = colour_jitter(x, augment, generator)
        x = torch.addcmul(self.shift, x, self.inv_std)
        if augment is not None and augment.erasing > 0:
            x = random_erasing(x, augment.erasing, generator)
        return x

    def _resample(self, x: torch.Tensor, augment: PhotoAugmentConfig, generator: torch.Generator) -> torch.Tensor:
        batch, _, height, width = x.shape
        params = crop_flip_params(batch, height, width, augment, generator, x.device, crop_size=self.image_size)
        grid = crop_grid(params, self.image_size)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] == (self.image_size, self.image_size):
            return x
        # Antialiased, as the photo cache and predict resize, so eval input matches them.
        return F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                             align_corners=False, antialias=True).clamp_(0, 1)
