"""The dataset source protocol: what every dataset tells :func:`~classicnets.data.build_data`.

A :class:`DatasetSource` knows how to list and load its splits: given a
:class:`DataRequest` (the settings of one run), :meth:`DatasetSource.load` returns a
:class:`SourceData`, the uint8 images the batchers read ("pools": one tensor for a photo
folder decoded into the cache, a training and a test file for Fashion-MNIST, CIFAR-10 and
STL-10), which positions of which pool make the train, val and test parts, and how to take
the exact statistics of the training part. Everything else (argument checks, statistics
checks, transforms, batchers, the bundle) is the same for every dataset and lives in
:mod:`classicnets.data.build`.

A source also declares what it reads: :attr:`DatasetSource.settings` names the optional
settings (:data:`OPTIONAL_SETTINGS`) it uses, so a setting given for a dataset that
ignores it can be refused instead of being recorded as if it had been used.

The sources themselves: :class:`TensorPairSource` (Fashion-MNIST, and any dataset shipped
as a training and a test tensor), ``array_datasets.ArraySource`` (CIFAR-10, STL-10) and
``file_datasets.FileSource`` (cats-vs-dogs, ``folder:PATH``); ``registry`` names them.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ..errors import UserError
from .augment import AugmentConfig, BatchTransform
from .image_io import MAX_IMAGE_PIXELS
from .splits import channel_mean_std, split_indices

# Settings that only some datasets read. Every dataset reads the rest of build_data's
# arguments (image and batch sizes, seed, subset, augment, loader, ...).
OPTIONAL_SETTINGS = ("val_size", "download", "manifest", "skip_bad", "mean", "std", "cache_dir", "max_pixels")


@dataclass
class LabelledImages:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]


@dataclass(frozen=True)
class DataRequest:
    """The settings of one run that a source may read (see :func:`~classicnets.data.build_data`)."""

    data_dir: str | os.PathLike | None
    seed: int = 0
    val_size: int = 6000
    subset: int | None = None
    download: bool = True
    image_size: int | None = None  # None: the images' own size (statistics only)
    workers: int = 1  # decoding threads
    manifest: str | os.PathLike | None = None
    skip_bad: bool = False
    cache_dir: Path | None = None
    max_pixels: int = MAX_IMAGE_PIXELS
    progress: bool = True


@dataclass
class SourceData:
    """A dataset as the batchers read it."""

    class_names: list[str]
    pools: list[LabelledImages]  # the uint8 tensors the parts index into
    parts: dict[str, tuple[int, torch.Tensor]]  # "train" | "val" | "test" -> (pool, positions in it)
    # Exact per-channel (mean, std) on [0, 1] of the training part; only called when the
    # user gave none.
    statistics: Callable[[], tuple[list[float], list[float]]]

    def size(self, part: str) -> int:
        return self.parts[part][1].numel()


class DatasetSource(ABC):
    """One dataset: how to list and load its splits, and what it reads."""

    name: str
    channels: int = 3  # of the images the batches hold
    # The OPTIONAL_SETTINGS this dataset reads; it would ignore the others.
    settings: frozenset[str] = frozenset()
    photo: bool = False  # a photo dataset: PhotoAugmentConfig and PhotoTransform
    augment_type: type = AugmentConfig  # what build_data(augment=...) becomes (its .coerce)
    transform_type: type = BatchTransform  # (mean, std, image_size, augment, device) -> batch transform

    def used_settings(self, given: Mapping[str, Any]) -> frozenset[str]:
        """The optional settings this dataset reads when run with ``given``."""
        return self.settings

    def unused_settings(self, given: Mapping[str, Any]) -> list[str]:
        """The names in ``given`` that this dataset would ignore, sorted. Only
        :data:`OPTIONAL_SETTINGS` are judged; a value of None or False counts as not given."""
        used = self.used_settings(given)
        return sorted(name for name, value in given.items()
                      if name in OPTIONAL_SETTINGS and name not in used and value is not None and value is not False)

    @abstractmethod
    def load(self, request: DataRequest) -> SourceData:
        """The dataset's images, labels and parts; raises UserError naming what is wrong."""

    def training_stats(self, request: DataRequest) -> dict[str, Any]:
        """``{"dataset", "images", "image_size", "mean", "std"}`` of the training part a run with
        ``request`` trains on (what ``classicnets stats`` prints)."""
        raise UserError(f"{self.name} has no statistics command.")


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir`` if given, else ``$CLASSICNETS_DATA``, else ``./data``; made absolute."""
    chosen = data_dir if data_dir is not None else os.environ.get("CLASSICNETS_DATA") or "data"
    return Path(chosen).expanduser().absolute()


class TensorPairSource(DatasetSource):
    """A dataset shipped as a training file and a test file of uint8 tensors (Fashion-MNIST).

    The validation part is a seeded, stratified ``val_size`` of the training file
    (:func:`~classicnets.data.splits.split_indices`); the test file stays whole. Images keep
    their native size and are resized on the device per batch.
    """

    settings = frozenset({"val_size", "download"})
    photo = False

    def __init__(self, name: str, class_names: list[str],
                 load: Callable[[Path, bool], tuple[LabelledImages, LabelledImages]], channels: int = 1) -> None:
        self.name = name
        self.class_names = list(class_names)
        self.read = load  # (root directory, download allowed) -> (training file, test file); raises UserError
        self.channels = channels

    def _split(self, request: DataRequest) -> tuple[LabelledImages, LabelledImages, torch.Tensor, torch.Tensor]:
        train_file, test_file = self.read(resolve_data_dir(request.data_dir), request.download)
        check_split_sizes(len(train_file.labels), request.val_size, request.subset)
        train, val = split_indices(train_file.labels, val_size=request.val_size, subset=request.subset,
                                   seed=request.seed)
        return train_file, test_file, train, val

    def load(self, request: DataRequest) -> SourceData:
        train_file, test_file, train, val = self._split(request)
        return SourceData(
            class_names=list(self.class_names), pools=[train_file, test_file],
            parts={"train": (0, train), "val": (0, val), "test": (1, torch.arange(len(test_file.labels)))},
            statistics=lambda: channel_mean_std(train_file.images[train]))

    def training_stats(self, request: DataRequest) -> dict[str, Any]:
        if request.image_size is not None:
            raise UserError(f"{self.name} statistics are taken at the native size, as training does; "
                            f"drop --image-size.")
        train_file, _, train, _ = self._split(request)
        mean, std = channel_mean_std(train_file.images[train])
        return {"dataset": self.name, "images": train.numel(), "image_size": None, "mean": mean, "std": std}


def check_split_sizes(num_train_file: int, val_size: int, subset: int | None) -> None:
    if not 1 <= val_size < num_train_file:
        raise UserError(f"val_size must be between 1 and {num_train_file - 1}, got {val_size}.")
    train_part = num_train_file - val_size
    if subset is not None and not 1 <= subset <= train_part:
        raise UserError(
            f"subset must be between 1 and the {train_part} training images left after validation, got {subset}."
        )
