"""Exact per-channel statistics (:mod:`~classicnets.data.pixel_stats`, re-exported here) and
:func:`training_split_mean_std`, the statistics of the training part a run uses (what
``classicnets stats`` prints)."""

from __future__ import annotations

from pathlib import Path

from .pixel_stats import (MIN_STD, ChannelHistogram, cached_mean_std, channel_label, check_given_statistics,
                          check_variation, files_mean_std, tensor_mean_std)
from .registry import get_source
from .sources import DataRequest

__all__ = [
    "MIN_STD", "ChannelHistogram", "cached_mean_std", "channel_label", "check_given_statistics", "check_variation",
    "files_mean_std", "tensor_mean_std", "training_split_mean_std",
]


def training_split_mean_std(name: str, data_dir: str | Path | None, *, manifest: str | None = None,
                            image_size: int | None = None, workers: int = 2, progress: bool = True,
                            download: bool = True, seed: int = 0, val_size: int = 6000,
                            skip_bad: bool = False) -> dict:
    """Statistics of the training split a run of dataset ``name`` would use.

    File datasets: the manifest's (or the default) training part, checked like training
    checks it (``skip_bad``), decoded at the files' own size or at ``image_size``.
    Fashion-MNIST, CIFAR-10, STL-10: the training file less the validation part that
    ``seed`` and ``val_size`` cut, at native size (as training does).
    Returns ``{"dataset", "images", "image_size", "mean", "std"}``.
    """
    request = DataRequest(data_dir=data_dir, seed=seed, val_size=val_size, download=download, image_size=image_size,
                          workers=workers, manifest=manifest, skip_bad=skip_bad, progress=progress)
    return get_source(name).training_stats(request)
