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
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

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


def _cifar_part(folder: Path, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in names:
        batch = _unpickle(folder / name)
        if "data" not in batch or "labels" not in batch:
            raise UserError(f"{folder / name} is not a CIFAR-10 batch file (no data/labels).")
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(batch["labels"]) != data.shape[0]:
            raise UserError(f"{folder / name} holds data of shape {data.shape}, not [N, 3072] with N labels.")
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        labels.append(torch.as_tensor(np.asarray(batch["labels"], dtype=np.int64)))
    return torch.cat(images), torch.cat(labels)


def load_cifar10(root: Path, download: bool) -> ArraySplits:
    folder = root / CIFAR10_FOLDER
    needed = CIFAR10_TRAIN + CIFAR10_TEST
    _ensure_files(folder, needed, download, "CIFAR10", root)
    train = _cifar_part(folder, CIFAR10_TRAIN)
    test = _cifar_part(folder, CIFAR10_TEST)
    names = CIFAR10_CLASSES
    if (folder / "batches.meta").is_file():
        names = [n.decode() if isinstance(n, bytes) else str(n)
                 for n in _unpickle(folder / "batches.meta").get("label_names", names)]
    return _checked(ArraySplits(*train, *test, names), folder)


# ----------------------------------------------------------------------------- STL-10

def _stl_images(path: Path) -> torch.Tensor:
    raw = np.fromfile(path, dtype=np.uint8)
    per_image = 3 * 96 * 96
    if raw.size % per_image:
        raise UserError(f"{path} is {raw.size} bytes, not a whole number of 3x96x96 images.")
    # Stored column-major (MATLAB order): swap H and W back.
    return torch.from_numpy(raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2).copy())


def _stl_labels(path: Path) -> torch.Tensor:
    labels = torch.from_numpy(np.fromfile(path, dtype=np.uint8).astype(np.int64))
    if labels.numel() and labels.min() < 1:
        raise UserError(f"{path} has a label 0; STL-10 labels run from 1 to 10.")
    return labels - 1


def load_stl10(root: Path, download: bool) -> ArraySplits:
    folder = root / STL10_FOLDER
    _ensure_files(folder, STL10_FILES, download, "STL10", root)
    names = STL10_CLASSES
    if (folder / "class_names.txt").is_file():
        names = [line.strip() for line in (folder / "class_names.txt").read_text().splitlines() if line.strip()]
    splits = ArraySplits(_stl_images(folder / "train_X.bin"), _stl_labels(folder / "train_y.bin"),
                         _stl_images(folder / "test_X.bin"), _stl_labels(folder / "test_y.bin"), names)
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
    count = len(splits.class_names)
    for part, images, labels in (("train", splits.train_images, splits.train_labels),
                                 ("test", splits.test_images, splits.test_labels)):
        if images.shape[0] != labels.shape[0]:
            raise UserError(f"{folder}: the {part} part has {images.shape[0]} images but {labels.shape[0]} labels.")
        if labels.numel() and (labels.min() < 0 or labels.max() >= count):
            raise UserError(f"{folder}: {part} labels fall outside the {count} classes.")
    return splits
