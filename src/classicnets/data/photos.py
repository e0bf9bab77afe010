"""Photo datasets as a :class:`~classicnets.data.DataBundle`: Dogs-vs-Cats, any image
folder, CIFAR-10 and STL-10.

Names: ``cats-vs-dogs`` (Kaggle's layout), ``folder:PATH`` (class-per-subfolder, or
already split into train/val/test), ``cifar10`` and ``stl10`` (torchvision's files).

File datasets go: list the files -> split (a manifest, else the default split) ->
check every image -> decode once into a cached uint8 array at the training size ->
statistics of the training part -> batchers that augment on the device. Their split
comes from, in order: the ``manifest`` argument, ``ROOT/classicnets-split.csv`` (what
``classicnets split`` writes by default), the layout's own train/val/test folders, or
the default 80/10/10 stratified split with seed 0. That split never depends on the
training seed, so every run of a dataset is tested on the same images.

CIFAR-10 and STL-10 ship train and test parts; validation is cut from train with the
training seed, ``min(val_size, 10%)`` images, as Fashion-MNIST does. Their images stay
at native size and are resized on the device per batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from ..errors import UserError
from .array_datasets import ArraySplits, load_cifar10, load_stl10
from .image_io import MAX_IMAGE_PIXELS
from .manifest import (ImageList, default_manifest_path, kaggle_root, list_folder, list_kaggle, make_split,
                       read_manifest, split_positions)
from .photo_augment import PhotoAugmentConfig, PhotoTransform
from .splits import derive_seed, scaled_val_size, stratified_split

if TYPE_CHECKING:
    from .batchers import Batcher
    from .build import DataBundle

FOLDER_PREFIX = "folder:"
FILE_DATASETS = ("cats-vs-dogs",)
ARRAY_DATASETS = {"cifar10": load_cifar10, "stl10": load_stl10}
# Keep the uint8 images on the GPU when they take at most this share of its free memory.
DEVICE_MEMORY_SHARE = 0.4
LOADERS = ("auto", "device", "dataloader")


def is_photo_dataset(name: str) -> bool:
    return name in FILE_DATASETS or name in ARRAY_DATASETS or name.startswith(FOLDER_PREFIX)


def list_photo_datasets() -> list[str]:
    return sorted([*FILE_DATASETS, *ARRAY_DATASETS, f"{FOLDER_PREFIX}PATH"])


@dataclass
class SplitImages:
    """A file dataset with the split of every image."""

    images: ImageList
    assignment: list[str]  # "train" | "val" | "test", one per image
    manifest: Path | None  # where the split came from, None for a computed one

    def part(self, split: str) -> ImageList:
        return self.images.select(split_positions(self.assignment)[split])


def dataset_slug(name: str) -> str:
    """``name`` fit for a file name: ``folder:/some/where/photos`` -> ``folder_photos``."""
    if not name.startswith(FOLDER_PREFIX):
        return name
    folder = os.path.basename(os.path.normpath(name[len(FOLDER_PREFIX):]))
    return f"folder_{folder}" if folder not in ("", ".", "..", os.sep) else "folder"


def list_images(name: str, data_dir: str | os.PathLike | None) -> ImageList:
    """The files of a file dataset (``cats-vs-dogs`` or ``folder:PATH``), unsplit."""
    if name.startswith(FOLDER_PREFIX):
        path = name[len(FOLDER_PREFIX):]
        if not path:
            raise UserError("folder: needs a path, as in folder:/data/flowers.")
        return list_folder(Path(path).expanduser().absolute())
    if name in FILE_DATASETS:
        from .build import resolve_data_dir

        return list_kaggle(kaggle_root(resolve_data_dir(data_dir)))
    if name in ARRAY_DATASETS:
        raise UserError(f"{name} ships as fixed train/test arrays, not image files; "
                        f"split and stats work on cats-vs-dogs and folder:PATH.")
    raise UserError(f"unknown photo dataset {name!r}; known: {', '.join(list_photo_datasets())}.")


def open_split(name: str, data_dir: str | os.PathLike | None, manifest: str | os.PathLike | None = None) -> SplitImages:
    """A file dataset with its split (see the module docstring for where the split comes from)."""
    listed = list_images(name, data_dir)
    chosen = Path(manifest) if manifest is not None else default_manifest_path(listed.root)
    if manifest is not None or chosen.is_file():
        images = read_manifest(chosen, listed.root)
        return SplitImages(images, [s for s in images.splits], chosen)
    return SplitImages(listed, make_split(listed), None)


def build_photo_data(
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
    augment: PhotoAugmentConfig | Mapping[str, Any] | Any | None = None,
    loader: str = "auto",
    num_workers: int = 2,
    download: bool = True,
    rank: int = 0,
    world_size: int = 1,
    manifest: str | os.PathLike | None = None,
    skip_bad: bool = False,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    cache_dir: str | os.PathLike | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    progress: bool = True,
) -> "DataBundle":
    """:func:`~classicnets.data.build_data` for photo datasets; the same arguments plus:

    ``augment``: a :class:`PhotoAugmentConfig`, its dict form, or the Fashion-MNIST
    ``AugmentConfig`` (see :meth:`PhotoAugmentConfig.from_basic`); None trains without.
    ``manifest``: a split CSV; ``skip_bad``: leave unreadable images out instead of
    stopping; ``mean``/``std``: use these instead of computing them; ``cache_dir``: where
    decoded photos, statistics and image checks are kept (default :func:`cache_root`);
    ``num_workers``: decoding threads.
    """
    _check_arguments(image_size, batch_size, eval_batch_size, seed, loader, num_workers, rank, world_size)
    if (mean is None) != (std is None):
        raise UserError("give both mean and std, or neither.")
    if mean is not None and (len(mean) != 3 or len(std) != 3):  # photos are always decoded to RGB
        raise UserError(f"{name} images have 3 channels (RGB): give mean and std as 3 numbers each, "
                        f"got {len(mean)} and {len(std)}.")
    plan = BatchPlan(image_size, batch_size, eval_batch_size, torch.empty(0, device=device).device, seed,
                     _augment_config(augment), loader, num_workers, rank, world_size)
    if name in ARRAY_DATASETS:
        from .build import resolve_data_dir

        arrays = ARRAY_DATASETS[name](resolve_data_dir(data_dir), download)
        return _bundle_from_arrays(arrays, plan, val_size, subset, mean, std)
    split = open_split(name, data_dir, manifest)
    if subset is not None:
        split = _subset(split, subset, val_size, seed)
    cache = Path(cache_dir) if cache_dir is not None else None
    return _bundle_from_files(split, plan, skip_bad=skip_bad, mean=mean, std=std, cache_dir=cache,
                              max_pixels=max_pixels, progress=progress)


@dataclass(frozen=True)
class BatchPlan:
    """How the batchers of one bundle read, augment and share out their images."""

    image_size: int
    batch_size: int
    eval_batch_size: int
    device: torch.device
    seed: int
    augment: PhotoAugmentConfig | None
    loader: str
    num_workers: int
    rank: int
    world_size: int


def _check_arguments(image_size: int, batch_size: int, eval_batch_size: int, seed: int, loader: str,
                     num_workers: int, rank: int, world_size: int) -> None:
    for label, value in (("image size", image_size), ("batch size", batch_size),
                         ("eval batch size", eval_batch_size), ("world size", world_size)):
        if value < 1:
            raise UserError(f"{label} must be at least 1, got {value}.")
    if seed < 0 or num_workers < 0:
        raise UserError(f"seed and num_workers must be 0 or more, got {seed} and {num_workers}.")
    if loader not in LOADERS:
        raise UserError(f"unknown loader {loader!r}; choose one of {', '.join(LOADERS)}.")
    if not 0 <= rank < world_size:
        raise UserError(f"rank must be in [0, {world_size - 1}] for world size {world_size}, got {rank}.")


def _augment_config(augment: Any) -> PhotoAugmentConfig | None:
    if augment is None or isinstance(augment, PhotoAugmentConfig):
        return augment
    if isinstance(augment, Mapping):
        return PhotoAugmentConfig.from_dict(augment)
    if hasattr(augment, "crop_padding"):  # data.AugmentConfig
        return PhotoAugmentConfig.from_basic(augment)
    raise UserError(f"augment must be a PhotoAugmentConfig or a mapping, got {augment!r}.")


def _subset(split: SplitImages, subset: int, val_size: int, seed: int) -> SplitImages:
    """A stratified ``subset`` of the training images and a matching smaller val part.

    The test part stays whole, as Fashion-MNIST's does, so a quick run's test accuracy
    is measured on the same images as a full run's.
    """
    positions = split_positions(split.assignment)
    classes = len(split.images.class_names)
    if not 1 <= subset <= len(positions["train"]):
        raise UserError(f"subset must be between 1 and the {len(positions['train'])} training images, got {subset}.")
    eval_size = scaled_val_size(val_size, subset, classes)
    labels = split.images.labels_tensor()
    keep: list[int] = list(positions["test"])
    for part, size in (("train", subset), ("val", eval_size)):
        members = torch.tensor(positions[part], dtype=torch.int64)
        size = min(size, members.numel())
        _, picked = stratified_split(labels[members], size, derive_seed(seed, "subset", part))
        keep += members[picked].tolist()
    keep.sort()
    return SplitImages(split.images.select(keep), [split.assignment[i] for i in keep], split.manifest)


def _bundle_from_files(split: SplitImages, plan: BatchPlan, *, skip_bad: bool, mean: list[float] | None,
                       std: list[float] | None, cache_dir: Path | None, max_pixels: int,
                       progress: bool) -> "DataBundle":
    from .photo_cache import load_photos
    from .stats import cached_mean_std
    from .validate import check_images, drop_bad_images

    workers = max(plan.num_workers, 1)
    report = check_images(split.images, max_pixels=max_pixels, workers=workers, cache_dir=cache_dir,
                          progress=progress)
    images = drop_bad_images(split.images, report, skip_bad=skip_bad, cache_dir=cache_dir)
    assignment = [s for s, rel in zip(split.assignment, split.images.paths) if rel not in report.bad]
    positions = {k: torch.tensor(v, dtype=torch.int64) for k, v in split_positions(assignment).items()}
    for part, members in positions.items():
        if members.numel() == 0:
            raise UserError(f"the split of {images.root} has no {part} images; "
                            f"make one with classicnets split (--val and --test above 0).")
    pixels = load_photos(images, plan.image_size, workers=workers, cache_dir=cache_dir, progress=progress,
                         max_pixels=max_pixels)
    if mean is None:
        train_images = images.select(positions["train"].tolist())
        mean, std = cached_mean_std(train_images, plan.image_size, pixels, cache_dir, indices=positions["train"])
    make = _batcher_factory(pixels, images.labels_tensor(), plan, mean, std)
    return _bundle(make(positions["train"], True), make(positions["val"], False), make(positions["test"], False),
                   images.class_names, mean, std, plan.image_size, {k: v.numel() for k, v in positions.items()})


def array_split_indices(arrays: ArraySplits, *, val_size: int, seed: int,
                        subset: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) positions into CIFAR-10's or STL-10's training file: ``val_size`` held
    out, stratified by ``seed``, but never more than a tenth of the file."""
    from .build import split_indices

    count = arrays.train_labels.numel()
    val_size = min(val_size, count // 10)
    if val_size < 1:
        raise UserError(f"{count} training images are too few to hold out a validation part.")
    if subset is not None and not 1 <= subset <= count - val_size:
        raise UserError(f"subset must be between 1 and the {count - val_size} training images, got {subset}.")
    return split_indices(arrays.train_labels, val_size=val_size, subset=subset, seed=seed)


def _bundle_from_arrays(arrays: ArraySplits, plan: BatchPlan, val_size: int, subset: int | None,
                        mean: list[float] | None, std: list[float] | None) -> "DataBundle":
    from .stats import tensor_mean_std

    train_idx, val_idx = array_split_indices(arrays, val_size=val_size, seed=plan.seed, subset=subset)
    test_idx = torch.arange(arrays.test_labels.numel())
    if mean is None:
        mean, std = tensor_mean_std(arrays.train_images, indices=train_idx)
    make_train = _batcher_factory(arrays.train_images, arrays.train_labels, plan, mean, std)
    make_test = _batcher_factory(arrays.test_images, arrays.test_labels, plan, mean, std)
    return _bundle(make_train(train_idx, True), make_train(val_idx, False), make_test(test_idx, False),
                   arrays.class_names, mean, std, plan.image_size,
                   {"train": train_idx.numel(), "val": val_idx.numel(), "test": test_idx.numel()})


def _batcher_factory(pixels: torch.Tensor, labels: torch.Tensor, plan: BatchPlan, mean: list[float],
                     std: list[float]) -> Callable[[torch.Tensor, bool], "Batcher"]:
    """Returns ``make(indices, train) -> Batcher`` over one shared uint8 tensor."""
    from .batchers import DeviceBatcher, LoaderBatcher

    on_device = plan.loader == "device" or (plan.loader == "auto" and _fits_on(plan.device, pixels))
    if on_device:
        pixels, labels = pixels.to(plan.device), labels.to(plan.device)
    plain = PhotoTransform(mean, std, plan.image_size, None, plan.device)
    augmented = PhotoTransform(mean, std, plan.image_size, plan.augment, plan.device)

    def make(indices: torch.Tensor, train: bool) -> "Batcher":
        options = dict(batch_size=plan.batch_size if train else plan.eval_batch_size, train=train,
                       transform=augmented if train else plain, device=plan.device, seed=plan.seed,
                       rank=plan.rank, world_size=plan.world_size)
        if on_device:
            return DeviceBatcher(pixels, labels, indices, **options)
        return LoaderBatcher(pixels, labels, indices, num_workers=plan.num_workers, **options)

    return make


def _fits_on(device: torch.device, pixels: torch.Tensor) -> bool:
    if device.type != "cuda":
        return True  # the CPU path reads the tensor where it already is
    free, _ = torch.cuda.mem_get_info(device)
    return pixels.numel() * pixels.element_size() <= DEVICE_MEMORY_SHARE * free


def _bundle(train: "Batcher", val: "Batcher", test: "Batcher", class_names: list[str], mean: list[float],
            std: list[float], image_size: int, split_sizes: dict[str, int]) -> "DataBundle":
    from .build import DataBundle

    return DataBundle(train=train, val=val, test=test, num_classes=len(class_names), in_chans=3,
                      class_names=list(class_names), mean=list(mean), std=list(std), image_size=image_size,
                      split_sizes=split_sizes)
