"""Datasets of image files: Kaggle's Dogs-vs-Cats (``cats-vs-dogs``) and any image folder
(``folder:PATH``, class-per-subfolder or already split into train/val/test).

A :class:`FileSource` goes: list the files -> split (a manifest, else the default split)
-> check every image -> decode once into a cached uint8 array at the training size ->
statistics of the training part (cached too). The split comes from, in order: the
``manifest`` setting, ``ROOT/classicnets-split.csv`` (what ``classicnets split`` writes by
default), the layout's own train/val/test folders, or the default 80/10/10 stratified
split with seed 0. That split never depends on the training seed, so every run of a
dataset is tested on the same images; ``val_size`` is read only to cap the validation
part of a ``subset`` run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import UserError
from .manifest import (ImageList, default_manifest_path, kaggle_root, list_folder, list_kaggle, make_split,
                       read_manifest, split_positions)
from .photo_augment import PhotoAugmentConfig, PhotoTransform
from .photo_cache import load_photos
from .pixel_stats import cached_mean_std, files_mean_std
from .sources import DataRequest, DatasetSource, LabelledImages, SourceData, resolve_data_dir
from .splits import derive_seed, scaled_val_size, stratified_split
from .validate import check_images, drop_bad_images

FOLDER_PREFIX = "folder:"
FILE_DATASETS = ("cats-vs-dogs",)


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


class FileSource(DatasetSource):
    """``cats-vs-dogs`` (under the data folder) or ``folder:PATH`` (anywhere)."""

    settings = frozenset({"manifest", "skip_bad", "mean", "std", "cache_dir", "max_pixels"})
    photo = True
    augment_type = PhotoAugmentConfig
    transform_type = PhotoTransform

    def __init__(self, name: str) -> None:
        if not (name in FILE_DATASETS or name.startswith(FOLDER_PREFIX)):
            raise ValueError(f"{name!r} is not a file dataset")
        self.name = name

    def used_settings(self, given: Mapping[str, Any]) -> frozenset[str]:
        # The split comes with the files; val_size only caps the val part of a subset run.
        return self.settings | {"val_size"} if given.get("subset") is not None else self.settings

    def list_images(self, data_dir: str | os.PathLike | None) -> ImageList:
        """The dataset's files, unsplit."""
        if self.name.startswith(FOLDER_PREFIX):
            path = self.name[len(FOLDER_PREFIX):]
            if not path:
                raise UserError("folder: needs a path, as in folder:/data/flowers.")
            return list_folder(Path(path).expanduser().absolute())
        return list_kaggle(kaggle_root(resolve_data_dir(data_dir)))

    def open_split(self, data_dir: str | os.PathLike | None,
                   manifest: str | os.PathLike | None = None) -> SplitImages:
        """The files with their split (see the module docstring for where the split comes from)."""
        listed = self.list_images(data_dir)
        chosen = Path(manifest) if manifest is not None else default_manifest_path(listed.root)
        if manifest is not None or chosen.is_file():
            images = read_manifest(chosen, listed.root, known_classes=listed.class_names)
            return SplitImages(images, [s for s in images.splits], chosen)
        return SplitImages(listed, make_split(listed), None)

    def load(self, request: DataRequest) -> SourceData:
        split = self.open_split(request.data_dir, request.manifest)
        if request.subset is not None:
            split = subset_split(split, request.subset, request.val_size, request.seed)
        report = check_images(split.images, max_pixels=request.max_pixels, workers=request.workers,
                              cache_dir=request.cache_dir, progress=request.progress)
        images = drop_bad_images(split.images, report, skip_bad=request.skip_bad, cache_dir=request.cache_dir)
        assignment = [s for s, rel in zip(split.assignment, split.images.paths) if rel not in report.bad]
        positions = {k: torch.tensor(v, dtype=torch.int64) for k, v in split_positions(assignment).items()}
        for part, members in positions.items():
            if members.numel() == 0:
                raise UserError(f"the split of {images.root} has no {part} images; "
                                f"make one with classicnets split (--val and --test above 0).")
        pixels = load_photos(images, request.image_size, workers=request.workers, cache_dir=request.cache_dir,
                             progress=request.progress, max_pixels=request.max_pixels)

        def statistics() -> tuple[list[float], list[float]]:
            train_images = images.select(positions["train"].tolist())
            return cached_mean_std(train_images, request.image_size, pixels, request.cache_dir,
                                   indices=positions["train"])

        return SourceData(class_names=list(images.class_names),
                          pools=[LabelledImages(pixels, images.labels_tensor())],
                          parts={part: (0, members) for part, members in positions.items()},
                          statistics=statistics)

    def training_stats(self, request: DataRequest) -> dict[str, Any]:
        """The manifest's (or the default) training part, checked as training checks it
        (``skip_bad``), decoded at the files' own size or at ``image_size``."""
        train = self.open_split(request.data_dir, request.manifest).part("train")
        report = check_images(train, workers=request.workers, progress=request.progress)
        train = drop_bad_images(train, report, skip_bad=request.skip_bad)
        mean, std = files_mean_std(train, image_size=request.image_size, workers=request.workers,
                                   progress=request.progress)
        return {"dataset": self.name, "images": len(train), "image_size": request.image_size, "mean": mean, "std": std}


def subset_split(split: SplitImages, subset: int, val_size: int, seed: int) -> SplitImages:
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
