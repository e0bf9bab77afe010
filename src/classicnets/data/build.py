"""Dataset registry and :func:`build_data`: raw tensors -> split -> statistics -> batchers."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import UserError
from .augment import AugmentConfig, BatchTransform
from .batchers import Batcher, DeviceBatcher, LoaderBatcher
from .splits import channel_mean_std, derive_seed, scaled_val_size, stratified_split

LOADERS = ("auto", "device", "dataloader")


@dataclass
class LabelledImages:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]


@dataclass(frozen=True)
class DatasetSource:
    name: str
    class_names: list[str]
    # (root directory, download allowed) -> (training images, test images); raises UserError
    load: Callable[[Path, bool], tuple[LabelledImages, LabelledImages]]


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


_DATASETS: dict[str, DatasetSource] = {}


def register_dataset(source: DatasetSource) -> None:
    if source.name in _DATASETS:
        raise ValueError(f"dataset {source.name!r} is registered twice")
    _DATASETS[source.name] = source


def list_datasets() -> list[str]:
    """Every dataset name ``build_data`` takes; ``folder:PATH`` stands for any image folder."""
    from .photos import list_photo_datasets

    return sorted([*_DATASETS, *list_photo_datasets()])


def is_known_dataset(name: str) -> bool:
    from .photos import is_photo_dataset

    return name in _DATASETS or is_photo_dataset(name)


def get_dataset_source(name: str) -> DatasetSource:
    if name not in _DATASETS:
        close = difflib.get_close_matches(name, list(_DATASETS), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"unknown dataset {name!r}{hint}; known datasets: {', '.join(list_datasets())}.")
    return _DATASETS[name]


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir`` if given, else ``$CLASSICNETS_DATA``, else ``./data``; made absolute."""
    chosen = data_dir if data_dir is not None else os.environ.get("CLASSICNETS_DATA") or "data"
    return Path(chosen).expanduser().absolute()


def split_indices(
    labels: torch.Tensor, *, val_size: int, subset: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified (train, val) positions into the training file, from ``seed`` alone.

    The full split comes first, so a ``subset`` run trains on a stratified sample of the
    same training part and validates on a stratified sample of the same validation part,
    shrunk by :func:`~classicnets.data.splits.scaled_val_size`.
    """
    train, val = stratified_split(labels, val_size, derive_seed(seed, "split"))
    if subset is None:
        return train, val
    num_classes = int(labels.unique().numel())
    _, train_pick = stratified_split(labels[train], subset, derive_seed(seed, "subset", "train"))
    small_val = scaled_val_size(val_size, subset, num_classes)
    _, val_pick = stratified_split(labels[val], small_val, derive_seed(seed, "subset", "val"))
    return train[train_pick], val[val_pick]


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
    augment: AugmentConfig | None = None,
    loader: str = "auto",
    num_workers: int = 2,
    download: bool = True,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    **photo_options: Any,
) -> DataBundle:
    """Load a dataset, split it, and return train/val/test batchers on ``device``.

    ``augment=None`` means no augmentation. ``loader``: ``"device"`` keeps the uint8
    images on ``device``; ``"dataloader"`` reads them through a DataLoader with
    ``num_workers`` workers; ``"auto"`` picks ``"device"`` (the supported datasets fit).
    Photo datasets (cats-vs-dogs, cifar10, stl10, ``folder:PATH``) go to
    :func:`~classicnets.data.photos.build_photo_data`, which also takes
    ``photo_options`` (manifest, skip_bad, mean, std, cache_dir, ...). ``progress``: progress
    bars for the photo datasets' image checks and decoding.
    """
    from .photos import build_photo_data, is_photo_dataset

    common = dict(data_dir=data_dir, image_size=image_size, batch_size=batch_size, eval_batch_size=eval_batch_size,
                  device=device, seed=seed, val_size=val_size, subset=subset, augment=augment, loader=loader,
                  num_workers=num_workers, download=download, rank=rank, world_size=world_size)
    if is_photo_dataset(name):
        return build_photo_data(name, **common, progress=progress, **photo_options)
    given = sorted(key for key, value in photo_options.items() if value not in (None, False))
    if given:
        raise UserError(f"{', '.join(given)} only apply to photo datasets, not {name}.")
    if isinstance(augment, dict):
        augment = AugmentConfig.from_dict(augment)
    source = get_dataset_source(name)
    _check_arguments(image_size, batch_size, eval_batch_size, seed, loader, num_workers, rank, world_size)
    train_file, test_file = source.load(resolve_data_dir(data_dir), download)
    _check_split_sizes(len(train_file.labels), val_size, subset, world_size)

    train_idx, val_idx = split_indices(train_file.labels, val_size=val_size, subset=subset, seed=seed)
    mean, std = channel_mean_std(train_file.images[train_idx])
    device = torch.device(device)
    plain = BatchTransform(mean, std, image_size, None, device)
    augmented = BatchTransform(mean, std, image_size, augment, device)

    on_device = loader != "dataloader"  # the device path copies each file to the device once
    train_tensors = _tensors(train_file, device if on_device else None)
    test_tensors = _tensors(test_file, device if on_device else None)

    def make_batcher(tensors: tuple[torch.Tensor, torch.Tensor], indices: torch.Tensor, train: bool) -> Batcher:
        options = dict(
            batch_size=batch_size if train else eval_batch_size,
            train=train,
            transform=augmented if train else plain,
            device=device,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )
        if on_device:
            return DeviceBatcher(*tensors, indices, **options)
        return LoaderBatcher(*tensors, indices, num_workers=num_workers, **options)

    return DataBundle(
        train=make_batcher(train_tensors, train_idx, train=True),
        val=make_batcher(train_tensors, val_idx, train=False),
        test=make_batcher(test_tensors, torch.arange(len(test_file.labels)), train=False),
        num_classes=len(source.class_names),
        in_chans=train_file.images.shape[1],
        class_names=list(source.class_names),
        mean=mean,
        std=std,
        image_size=image_size,
        split_sizes={"train": train_idx.numel(), "val": val_idx.numel(), "test": len(test_file.labels)},
    )


def _tensors(data: LabelledImages, device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor]:
    if device is None:
        return data.images, data.labels
    return data.images.to(device), data.labels.to(device)


def _check_arguments(
    image_size: int, batch_size: int, eval_batch_size: int, seed: int, loader: str, num_workers: int,
    rank: int, world_size: int,
) -> None:
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


def _check_split_sizes(num_train_file: int, val_size: int, subset: int | None, world_size: int) -> None:
    if not 1 <= val_size < num_train_file:
        raise UserError(f"val_size must be between 1 and {num_train_file - 1}, got {val_size}.")
    train_part = num_train_file - val_size
    if subset is not None and not 1 <= subset <= train_part:
        raise UserError(
            f"subset must be between 1 and the {train_part} training images left after validation, got {subset}."
        )
    trained = subset if subset is not None else train_part
    if trained < world_size:
        raise UserError(f"{trained} training images cannot be shared by {world_size} ranks.")
