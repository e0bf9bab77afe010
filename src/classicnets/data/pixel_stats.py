"""Exact per-channel mean and standard deviation, streamed, and the checks a dataset's
statistics must pass before anything trains on them.

Pixels are uint8, so a 256-bin histogram per channel holds everything the mean and the
variance need, in exact int64 counts, however many images stream through; the only
rounding is the final float64 arithmetic. Memory stays constant: one image (or one
chunk of a tensor) at a time.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..errors import UserError
from .image_io import MAX_IMAGE_PIXELS, BadImageError, load_rgb, resize_center_crop
from .manifest import ImageList
from .photo_cache import atomic_write_text, cache_root, images_key

log = logging.getLogger(__name__)


class ChannelHistogram:
    """Running per-channel histograms of uint8 pixels."""

    def __init__(self, channels: int = 3) -> None:
        self.counts = torch.zeros(channels, 256, dtype=torch.int64)

    def add(self, images: torch.Tensor) -> None:
        """Add uint8 ``[C, H, W]`` or ``[N, C, H, W]`` pixels."""
        if images.dtype != torch.uint8:
            raise TypeError(f"expected uint8 pixels, got {images.dtype}")
        pixels = images.cpu().numpy()
        channel_axis = pixels.ndim - 3
        for channel in range(self.counts.shape[0]):
            values = np.take(pixels, channel, axis=channel_axis).ravel()
            # NumPy's bincount: torch's is ~100x slower on uint8 input on the CPU.
            self.counts[channel] += torch.from_numpy(np.bincount(values, minlength=256))

    @property
    def pixels_per_channel(self) -> int:
        return int(self.counts[0].sum())

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Mean and population std per channel, on [0, 1]."""
        if self.pixels_per_channel == 0:
            raise ValueError("no pixels were added")
        values = torch.arange(256, dtype=torch.float64)
        counts = self.counts.double()
        total = counts.sum(1)
        mean = (counts * values).sum(1) / total
        var = (counts * (values[None] - mean[:, None]) ** 2).sum(1) / total
        return (mean / 255).tolist(), (var.sqrt() / 255).tolist()


def tensor_mean_std(images: torch.Tensor, chunk: int = 256,
                    indices: torch.Tensor | None = None) -> tuple[list[float], list[float]]:
    """Exact statistics of a uint8 ``[N, C, H, W]`` tensor (or of its ``indices`` rows), a
    chunk of images at a time, so a subset is never copied whole."""
    histogram = ChannelHistogram(images.shape[1])
    count = images.shape[0] if indices is None else indices.numel()
    for start in range(0, count, chunk):
        histogram.add(images[start:start + chunk] if indices is None else images[indices[start:start + chunk]])
    return histogram.mean_std()


def files_mean_std(images: ImageList, *, image_size: int | None = None, workers: int = 2, progress: bool = True,
                   max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[list[float], list[float]]:
    """Exact statistics over image files, decoded in a thread pool and streamed.

    ``image_size=None`` counts every pixel at the file's own resolution; a size counts
    the pixels the model would see (shorter side scaled to it, centre square).
    """
    def decode(path: Path) -> torch.Tensor:
        try:
            image = load_rgb(path, max_pixels)
        except BadImageError as error:
            raise UserError(f"cannot decode {path}: {error}.") from None
        return image if image_size is None else resize_center_crop(image, image_size)

    histogram = ChannelHistogram(3)
    files = images.files()
    window = 16 * max(1, workers)  # decoded images in flight: memory stays bounded
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(files), desc="computing mean/std", unit="img", disable=not progress, leave=False) as bar:
        for start in range(0, len(files), window):
            for image in pool.map(decode, files[start:start + window]):
                histogram.add(image)
                bar.update()
    return histogram.mean_std()


def cached_mean_std(images: ImageList, image_size: int, pixels: torch.Tensor,
                    cache_dir: Path | None = None, indices: torch.Tensor | None = None) -> tuple[list[float], list[float]]:
    """Statistics of ``pixels`` (or its ``indices`` rows: the decoded training images),
    remembered per image list and size."""
    path = (cache_dir or cache_root()) / f"stats-{images_key(images, image_size)[:24]}.json"
    try:
        saved = json.loads(path.read_text())
        return [float(v) for v in saved["mean"]], [float(v) for v in saved["std"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    mean, std = tensor_mean_std(pixels, indices=indices)
    try:
        atomic_write_text(path, json.dumps({"mean": mean, "std": std, "images": len(images),
                                            "image_size": image_size}))
    except OSError as error:
        log.warning("could not save the statistics cache %s (%s)", path, error.strerror)
    return mean, std


# A channel whose std on the [0, 1] scale is below this holds one value: normalising by it
# would divide by (almost) zero, and training would diverge with nothing to say why.
MIN_STD = 1e-6
RGB_NAMES = ("red", "green", "blue")


def channel_label(channel: int, channels: int) -> str:
    """``channel 2 (blue)`` for RGB images, ``channel 0`` otherwise."""
    return f"channel {channel} ({RGB_NAMES[channel]})" if channels == 3 else f"channel {channel}"


def check_variation(dataset: str, mean: list[float], std: list[float]) -> None:
    """Refuse training statistics of a channel in which every pixel of the training images is the same."""
    for channel, (m, s) in enumerate(zip(mean, std)):
        if s < MIN_STD:
            raise UserError(f"the training images of {dataset} have no variation in "
                            f"{channel_label(channel, len(std))} (every pixel is {round(m * 255)}): check the data.")


def check_given_statistics(dataset: str, mean: Any, std: Any, channels: int) -> None:
    """Mean and std given by the user (``None`` both: computed from the data instead)."""
    if (mean is None) != (std is None):
        raise UserError("give both mean and std, or neither.")
    if mean is None:
        return
    for label, values in (("mean", mean), ("std", std)):
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or any(
                isinstance(v, bool) or not isinstance(v, numbers.Real) for v in values):
            raise UserError(f"{label} must be a list of numbers, one per channel, got {values!r}.")
    if len(mean) != channels or len(std) != channels:
        kind = "3 channels (RGB)" if channels == 3 else f"{channels} channel(s)"
        raise UserError(f"{dataset} images have {kind}: give mean and std as {channels} numbers each, "
                        f"got {len(mean)} and {len(std)}.")
    for label, values in (("mean", mean), ("std", std)):
        if not all(math.isfinite(v) for v in values):
            raise UserError(f"{label} must be finite, got {list(values)}.")
    if not all(v > 0 for v in std):
        raise UserError(f"std must be above 0 in every channel, got {list(std)}.")
