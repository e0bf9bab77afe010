""":func:`build_data`, the one way from a dataset name to train/val/test batchers.

Every dataset goes the same way: check the arguments -> its source loads it (split into
train/val/test) -> statistics of the training part (or the user's, checked) -> batch
transforms -> batchers from :func:`~classicnets.data.batchers.batcher_factory`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from .augment import AugmentConfig
from .batchers import LOADERS, Batcher, BatchPlan, batcher_factory
from .image_io import MAX_IMAGE_PIXELS
from .pixel_stats import check_given_statistics, check_variation
from .registry import get_dataset_source, get_source, is_known_dataset, list_datasets, register_dataset
from .sources import DataRequest, DatasetSource, LabelledImages, resolve_data_dir
from .splits import split_indices

# build_data's options that only some datasets read, with their defaults.
PHOTO_OPTIONS: dict[str, Any] = {"manifest": None, "skip_bad": False, "mean": None, "std": None,
                                 "cache_dir": None, "max_pixels": MAX_IMAGE_PIXELS}

__all__ = [
    "LOADERS", "PHOTO_OPTIONS", "DataBundle", "DatasetSource", "LabelledImages", "build_data", "check_arguments",
    "get_dataset_source", "get_source", "is_known_dataset", "list_datasets", "register_dataset",
    "resolve_data_dir", "split_indices",
]


@dataclass
class DataBundle:
    train: Batcher
    val: Batcher
    test: Batcher
    num_classes: int
    in_chans: int
    class_names: list[str]
    mean: list[float]  # per channel, on [0, 1], from the images the model trains on
    std: list[float]
    image_size: int
    split_sizes: dict[str, int]  # whole splits, before sharding over ranks
    # The training part without augmentation, in evaluation batches: for scoring every image
    # of a dataset (``evaluate --split all``). None where a caller built the bundle by hand.
    train_plain: Batcher | None = None

    def plain_batchers(self, split: str) -> list[Batcher]:
        """The unaugmented batchers that cover ``split``: "train", "val", "test", or "all"
        (train, val and test in turn: every image of the dataset once)."""
        parts = {"train": [self.train_plain], "val": [self.val], "test": [self.test]}
        parts["all"] = parts["train"] + parts["val"] + parts["test"]
        if None in parts[split]:
            raise ValueError("this DataBundle was built without its unaugmented training batcher")
        return parts[split]


def build_data(
    name: str,
    *,
    data_dir: str | os.PathLike | None,
    image_size: int,
    batch_size: int,
    eval_batch_size: int,
    device: torch.device | str,
    seed: int,
    val_size: int = 6000,
    subset: int | None = None,
    augment: AugmentConfig | Any | None = None,
    loader: str = "auto",
    num_workers: int = 2,
    download: bool = True,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    **photo_options: Any,
) -> DataBundle:
    """Load dataset ``name``, split it, and return train/val/test batchers on ``device``.

    ``augment``: None trains without augmentation; otherwise the dataset's augmentation
    config or its dict form (:class:`~classicnets.data.AugmentConfig` for Fashion-MNIST,
    :class:`~classicnets.data.photo_augment.PhotoAugmentConfig` for photos, which also take
    an ``AugmentConfig``). ``loader``: ``"device"`` keeps the uint8 images on ``device``;
    ``"dataloader"`` reads them through a DataLoader with ``num_workers`` workers;
    ``"auto"`` picks ``"device"`` when they fit (always on the CPU). ``val_size``: the
    validation images cut from a training file (Fashion-MNIST; CIFAR-10 and STL-10 take at
    most a tenth); file datasets bring their split. ``progress``: progress bars for the
    photo datasets' image checks and decoding.

    ``photo_options`` (:data:`PHOTO_OPTIONS`; each dataset declares which it reads, and one
    it does not read is refused): ``manifest`` a split CSV; ``skip_bad`` leave unreadable
    images out instead of stopping; ``mean``/``std`` use these instead of the training
    part's statistics; ``cache_dir`` where decoded photos, statistics and image checks are
    kept; ``max_pixels`` the largest image decoded.
    """
    unknown = sorted(set(photo_options) - set(PHOTO_OPTIONS))
    if unknown:
        raise TypeError(f"build_data() got an unexpected keyword argument {unknown[0]!r}")
    source = get_source(name)
    check_arguments(image_size, batch_size, eval_batch_size, seed, loader, num_workers, rank, world_size)
    unused = source.unused_settings(photo_options)
    if unused:
        raise UserError(f"{', '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply to {name}; "
                        f"leave {'it' if len(unused) == 1 else 'them'} out.")
    options = PHOTO_OPTIONS | photo_options
    augment = source.augment_type.coerce(augment)
    check_given_statistics(name, options["mean"], options["std"], source.channels)

    request = DataRequest(
        data_dir=data_dir, seed=seed, val_size=val_size, subset=subset, download=download, image_size=image_size,
        workers=max(num_workers, 1), manifest=options["manifest"], skip_bad=options["skip_bad"],
        cache_dir=Path(options["cache_dir"]) if options["cache_dir"] is not None else None,
        max_pixels=options["max_pixels"], progress=progress)
    data = source.load(request)
    if data.size("train") < world_size:
        raise UserError(f"{data.size('train')} training images cannot be shared by {world_size} ranks.")
    if options["mean"] is None:
        mean, std = data.statistics()
        check_variation(name, mean, std)
    else:
        mean, std = [float(v) for v in options["mean"]], [float(v) for v in options["std"]]

    device = torch.empty(0, device=device).device  # "cuda" -> "cuda:0": the device batches land on
    plan = BatchPlan(batch_size, eval_batch_size, device, seed, loader, num_workers, rank, world_size)
    plain = source.transform_type(mean, std, image_size, None, device)
    augmented = source.transform_type(mean, std, image_size, augment, device)
    makers = [batcher_factory(pool.images, pool.labels, plan, plain, augmented) for pool in data.pools]
    batchers = {part: makers[pool](indices, part == "train") for part, (pool, indices) in data.parts.items()}
    train_pool, train_indices = data.parts["train"]
    return DataBundle(
        train=batchers["train"], val=batchers["val"], test=batchers["test"],
        train_plain=makers[train_pool](train_indices, False),
        num_classes=len(data.class_names), in_chans=data.pools[0].images.shape[1],
        class_names=list(data.class_names), mean=list(mean), std=list(std), image_size=image_size,
        split_sizes={part: data.size(part) for part in ("train", "val", "test")})


def check_arguments(image_size: int, batch_size: int, eval_batch_size: int, seed: int, loader: str,
                    num_workers: int, rank: int, world_size: int) -> None:
    """The arguments of :func:`build_data` that every dataset reads the same way."""
    for label, value in (("image size", image_size), ("batch size", batch_size),
                         ("eval batch size", eval_batch_size), ("world size", world_size)):
        if value < 1:
            raise UserError(f"{label} must be at least 1, got {value}.")
    if seed < 0:
        raise UserError(f"seed must be 0 or more, got {seed}.")
    if loader not in LOADERS:
        raise UserError(f"unknown loader {loader!r}; choose one of {', '.join(LOADERS)}.")
    if num_workers < 0:
        raise UserError(f"num_workers must be 0 or more, got {num_workers}.")
    if not 0 <= rank < world_size:
        raise UserError(f"rank must be in [0, {world_size - 1}] for world size {world_size}, got {rank}.")
