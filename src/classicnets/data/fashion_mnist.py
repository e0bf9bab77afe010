"""Fashion-MNIST (Xiao et al., 2017): 60,000 training and 10,000 test images, 28x28 grey, 10 classes.

The four IDX files sit in torchvision's usual layout,
``ROOT/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``; torchvision
downloads them when they are missing and downloading is allowed. They are read here, not
through torchvision's class, so every value is checked as a flag is: the header's type,
number of dimensions and sizes must agree with the file's length (checked before anything
is allocated), images must be 28x28, each label file must hold one label per image, and
every label must be one of the 10 classes. Each file becomes one uint8 tensor.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .sources import LabelledImages, TensorPairSource

CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGE_SIDE = 28
IDX_UNSIGNED_BYTE = 0x08  # the IDX type code of uint8 values


def raw_dir(root: Path) -> Path:
    return Path(root) / "FashionMNIST" / "raw"


def load_fashion_mnist(root: Path, download: bool = True) -> tuple[LabelledImages, LabelledImages]:
    """(training file, test file) as uint8 ``[N, 1, 28, 28]`` images and int64 labels.

    With ``download=True`` missing files are fetched by torchvision; if that fails (no
    internet) or is not allowed, a :class:`UserError` says which files to put where.
    """
    if download and not _all_present(root):
        from torchvision.datasets import FashionMNIST  # torchvision is slow to import

        try:
            FashionMNIST(root, train=True, download=True)  # fetches all four files
        except (OSError, RuntimeError) as error:  # URLError is an OSError
            raise _missing_files_error(root, "the download failed") from error
    if not _all_present(root):
        raise _missing_files_error(root, "downloading is off")
    return _read_part(raw_dir(root), "train"), _read_part(raw_dir(root), "t10k")


def _read_part(folder: Path, prefix: str) -> LabelledImages:
    images_path, labels_path = folder / f"{prefix}-images-idx3-ubyte", folder / f"{prefix}-labels-idx1-ubyte"
    images = read_idx(images_path, 3, "an image file")
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise _unreadable(images_path, f"it holds images of {images.shape[1]}x{images.shape[2]} pixels; "
                                       f"Fashion-MNIST's are {IMAGE_SIDE}x{IMAGE_SIDE}")
    labels = read_idx(labels_path, 1, "a label file")
    if labels.shape[0] != images.shape[0]:
        raise UserError(f"could not read Fashion-MNIST: {images_path} holds {images.shape[0]} images but "
                        f"{labels_path} holds {labels.shape[0]} labels; replace the four IDX files.")
    outside = np.flatnonzero(labels >= len(CLASS_NAMES))
    if outside.size:
        first = int(outside[0])
        raise _unreadable(labels_path, f"label {int(labels[first])} at position {first} is outside "
                                       f"Fashion-MNIST's {len(CLASS_NAMES)} classes (0 to {len(CLASS_NAMES) - 1})")
    return LabelledImages(torch.from_numpy(images).unsqueeze(1).contiguous(),
                          torch.from_numpy(labels.astype(np.int64)))


def read_idx(path: Path, dimensions: int, kind: str) -> np.ndarray:
    """An IDX file of unsigned bytes with ``dimensions`` dimensions, checked against its length
    before its data is read."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            magic = handle.read(4)
            if len(magic) < 4 or magic[0] or magic[1]:
                raise _unreadable(path, "it is not an IDX file (its first bytes are not 00 00 08 0N)")
            if magic[2] != IDX_UNSIGNED_BYTE:
                raise _unreadable(path, f"its values are of IDX type 0x{magic[2]:02x}, not unsigned bytes (0x08)")
            if magic[3] != dimensions:
                raise _unreadable(path, f"its header declares {magic[3]} dimensions; {kind} has {dimensions}")
            sizes = handle.read(4 * dimensions)
            if len(sizes) < 4 * dimensions:
                raise _unreadable(path, "it ends inside its header")
            shape = struct.unpack(f">{dimensions}I", sizes)
            header = 4 + 4 * dimensions
            if math.prod(shape) != size - header:
                raise _unreadable(path, f"its header declares {' x '.join(map(str, shape))} values but the file "
                                        f"holds {size - header:,} bytes after the header")
            data = np.fromfile(handle, dtype=np.uint8)
    except OSError as error:
        raise _unreadable(path, f"it cannot be read ({error.strerror or error})") from None
    return data.reshape(shape)


def _unreadable(path: Path, why: str) -> UserError:
    return UserError(f"could not read Fashion-MNIST file {path}: {why}; replace it with the original "
                     f"(or delete it and allow the download).")


def _all_present(root: Path) -> bool:
    return all((raw_dir(root) / name).is_file() for name in RAW_FILES)


def _missing_files_error(root: Path, why: str) -> UserError:
    missing = [name for name in RAW_FILES if not (raw_dir(root) / name).is_file()]
    return UserError(
        f"Fashion-MNIST is missing from {raw_dir(root)} and {why}: put the uncompressed IDX files "
        f"{', '.join(missing)} there (or point --data-dir or CLASSICNETS_DATA at the folder that holds "
        "FashionMNIST/raw)."
    )


FASHION_MNIST = TensorPairSource("fashion-mnist", CLASS_NAMES, load_fashion_mnist, channels=1)
