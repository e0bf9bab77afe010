"""CIFAR-10 and STL-10 from the files torchvision downloads, read without torchvision's classes.

torchvision's dataset classes verify each file's MD5 before reading it, so they refuse
anything but the original archives; these readers parse the same files directly, which
also lets the tests check them on tiny files written in the same formats. When the files
are missing and ``download`` is allowed, torchvision fetches them.

* CIFAR-10 (``ROOT/cifar-10-batches-py``): Python pickles ``data_batch_1..5`` and
  ``test_batch`` with ``data`` (uint8 ``[N, 3072]``, R then G then B planes, row-major)
  and ``labels``; ``batches.meta`` has ``label_names``. Unpickling is restricted to
  plain containers and NumPy arrays, so a doctored file cannot run code.
* STL-10 (``ROOT/stl10_binary``): raw uint8 ``train_X.bin``/``test_X.bin`` of
  ``[N, 3, 96, 96]`` images stored column-major, labels 1..10 in ``train_y.bin``/``test_y.bin``,
  and ``class_names.txt``.

Values read from these files are checked as flags are: images must be uint8 of the
expected shape, labels integers inside the class range, each file named in the message.
:class:`ArraySource` is the dataset source of both: validation is cut from the training
file with the training seed, ``min(val_size, 10%)`` images, and the images stay at native
size, resized on the device per batch.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import UserError
from .photo_augment import PhotoAugmentConfig, PhotoTransform
from .pixel_stats import tensor_mean_std
from .sources import DataRequest, DatasetSource, LabelledImages, SourceData, resolve_data_dir
from .splits import split_indices

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST = ["test_batch"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

STL10_FOLDER = "stl10_binary"
STL10_FILES = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


@dataclass
class ArraySplits:
    """A dataset that ships as arrays: uint8 images ``[N, 3, H, W]`` with fixed train/test parts."""

    train_images: torch.Tensor
    train_labels: torch.Tensor  # int64
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: list[str]


# ----------------------------------------------------------------------------- CIFAR-10

class _ArrayUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, bytes and NumPy arrays; refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        # Protocol 2 stores bytes as _codecs.encode(text, "latin1"); protocol 5 arrays use _frombuffer.
        ("_codecs", "encode"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            # latin1 reads the NumPy arrays inside Python 2 pickles (the CIFAR originals).
            content = _ArrayUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise UserError(f"{path} is not a CIFAR batch file ({error}).") from None
    if not isinstance(content, dict):
        raise UserError(f"{path} is not a CIFAR batch file (expected a dictionary).")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in content.items()}


def _cifar_part(folder: Path, names: list[str], classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in names:
        path = folder / name
        batch = _unpickle(path)
        if "data" not in batch or "labels" not in batch:
            raise UserError(f"{path} is not a CIFAR-10 batch file (no data/labels).")
        file_labels = _labels_field(path, batch["labels"], classes)
        data = batch["data"]
        if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
                or data.shape[1] != 3 * 32 * 32 or data.shape[0] != len(file_labels)):
            got = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
            raise UserError(f"{path}: the field data must be uint8 [N, 3072] with one row per label "
                            f"({len(file_labels)}), got {got}.")
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        labels.append(torch.from_numpy(file_labels))
    return torch.cat(images), torch.cat(labels)


def _labels_field(path: Path, values: Any, classes: int) -> np.ndarray:
    """A batch file's ``labels``: a list of integers in ``[0, classes)``, as int64."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "iu":
        items = values.tolist()
    elif isinstance(values, (list, tuple)):
        items = list(values)
    else:
        items = None
    if items is None or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in items):
        shown = repr(values) if len(repr(values)) <= 60 else f"{type(values).__name__} {repr(values)[:60]}..."
        raise UserError(f"{path}: the field labels must be a list of integers, got {shown}.")
    for position, value in enumerate(items):
        if not 0 <= value < classes:
            raise UserError(f"{path}: in the field labels, label {value} at position {position} is outside "
                            f"the {classes} classes (0 to {classes - 1}).")
    return np.asarray(items, dtype=np.int64).reshape(-1)


def _cifar_class_names(folder: Path) -> list[str]:
    path = folder / "batches.meta"
    if not path.is_file():
        return list(CIFAR10_CLASSES)
    names = _unpickle(path).get("label_names", CIFAR10_CLASSES)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (str, bytes)) for n in names) or len(names) < 2:
        raise UserError(f"{path}: the field label_names must be a list of at least two class names.")
    return [n.decode() if isinstance(n, bytes) else n for n in names]


def load_cifar10(root: Path, download: bool) -> ArraySplits:
    folder = root / CIFAR10_FOLDER
    needed = CIFAR10_TRAIN + CIFAR10_TEST
    _ensure_files(folder, needed, download, "CIFAR10", root)
    names = _cifar_class_names(folder)
    train = _cifar_part(folder, CIFAR10_TRAIN, len(names))
    test = _cifar_part(folder, CIFAR10_TEST, len(names))
    return _checked(ArraySplits(*train, *test, names), folder)


# ----------------------------------------------------------------------------- STL-10

def _stl_images(path: Path) -> torch.Tensor:
    raw = np.fromfile(path, dtype=np.uint8)
    per_image = 3 * 96 * 96
    if raw.size % per_image:
        raise UserError(f"{path} is {raw.size} bytes, not a whole number of 3x96x96 images.")
    # Stored column-major (MATLAB order): swap H and W back.
    return torch.from_numpy(raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2).copy())


def _stl_labels(path: Path, classes: int) -> torch.Tensor:
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    outside = np.flatnonzero((labels < 1) | (labels > classes))
    if outside.size:
        first = int(outside[0])
        raise UserError(f"{path}: label {labels[first]} at position {first} is outside STL-10's {classes} classes "
                        f"(labels run from 1 to {classes}).")
    return torch.from_numpy(labels - 1)


def load_stl10(root: Path, download: bool) -> ArraySplits:
    folder = root / STL10_FOLDER
    _ensure_files(folder, STL10_FILES, download, "STL10", root)
    names = STL10_CLASSES
    if (folder / "class_names.txt").is_file():
        names = [line.strip() for line in (folder / "class_names.txt").read_text().splitlines() if line.strip()]
        if len(names) < 2:
            raise UserError(f"{folder / 'class_names.txt'} names {len(names)} class(es); STL-10 has 10.")
    splits = ArraySplits(_stl_images(folder / "train_X.bin"), _stl_labels(folder / "train_y.bin", len(names)),
                         _stl_images(folder / "test_X.bin"), _stl_labels(folder / "test_y.bin", len(names)), names)
    return _checked(splits, folder)


# ----------------------------------------------------------------------------- shared

def _ensure_files(folder: Path, names: list[str], download: bool, torchvision_name: str, root: Path) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if not missing:
        return
    if download:
        _download(torchvision_name, root)
        missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise UserError(f"missing {', '.join(missing)} in {folder}; put torchvision's {torchvision_name} files "
                        f"there or allow the download (needs internet).")


def _download(torchvision_name: str, root: Path) -> None:
    import torchvision.datasets

    try:
        if torchvision_name == "STL10":
            torchvision.datasets.STL10(str(root), split="train", download=True)
        else:
            torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except (OSError, RuntimeError) as error:  # no network (URLError is an OSError) or a bad archive
        raise UserError(f"could not download {torchvision_name} into {root} ({error}).") from None


def _checked(splits: ArraySplits, folder: Path) -> ArraySplits:
    """Labels were checked file by file as they were read; here, that images and labels pair up."""
    for part, images, labels in (("train", splits.train_images, splits.train_labels),
                                 ("test", splits.test_images, splits.test_labels)):
        if images.shape[0] != labels.shape[0]:
            raise UserError(f"{folder}: the {part} part has {images.shape[0]} images but {labels.shape[0]} labels.")
    return splits


ARRAY_DATASETS: dict[str, Callable[[Path, bool], ArraySplits]] = {"cifar10": load_cifar10, "stl10": load_stl10}


def array_split_indices(arrays: ArraySplits, *, val_size: int, seed: int,
                        subset: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) positions into CIFAR-10's or STL-10's training file: ``val_size`` held
    out, stratified by ``seed``, but never more than a tenth of the file."""
    count = arrays.train_labels.numel()
    val_size = min(val_size, count // 10)
    if val_size < 1:
        raise UserError(f"{count} training images are too few to hold out a validation part.")
    if subset is not None and not 1 <= subset <= count - val_size:
        raise UserError(f"subset must be between 1 and the {count - val_size} training images, got {subset}.")
    return split_indices(arrays.train_labels, val_size=val_size, subset=subset, seed=seed)


class ArraySource(DatasetSource):
    """CIFAR-10 or STL-10: fixed train and test arrays, validation cut from train by the seed."""

    settings = frozenset({"val_size", "download", "mean", "std"})
    photo = True
    augment_type = PhotoAugmentConfig
    transform_type = PhotoTransform

    def __init__(self, name: str) -> None:
        self.name = name

    def _split(self, request: DataRequest) -> tuple[ArraySplits, torch.Tensor, torch.Tensor]:
        arrays = ARRAY_DATASETS[self.name](resolve_data_dir(request.data_dir), request.download)
        train, val = array_split_indices(arrays, val_size=request.val_size, seed=request.seed, subset=request.subset)
        return arrays, train, val

    def load(self, request: DataRequest) -> SourceData:
        arrays, train, val = self._split(request)
        return SourceData(
            class_names=list(arrays.class_names),
            pools=[LabelledImages(arrays.train_images, arrays.train_labels),
                   LabelledImages(arrays.test_images, arrays.test_labels)],
            parts={"train": (0, train), "val": (0, val), "test": (1, torch.arange(arrays.test_labels.numel()))},
            statistics=lambda: tensor_mean_std(arrays.train_images, indices=train))

    def training_stats(self, request: DataRequest) -> dict[str, Any]:
        if request.image_size is not None:
            raise UserError(f"{self.name} statistics are taken at the native size, as training does; "
                            f"drop --image-size.")
        arrays, train, _ = self._split(request)
        mean, std = tensor_mean_std(arrays.train_images, indices=train)
        return {"dataset": self.name, "images": train.numel(), "image_size": None, "mean": mean, "std": std}
