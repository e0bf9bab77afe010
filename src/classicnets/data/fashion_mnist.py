"""Fashion-MNIST (Xiao et al., 2017): 60,000 training and 10,000 test images, 28x28 grey, 10 classes.

Read through ``torchvision.datasets.FashionMNIST`` in its usual layout,
``ROOT/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``, and kept as one
uint8 tensor per file (``ds.data``) instead of being decoded image by image through PIL.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .build import LabelledImages

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


def raw_dir(root: Path) -> Path:
    return Path(root) / "FashionMNIST" / "raw"


def load_fashion_mnist(root: Path, download: bool = True) -> tuple[LabelledImages, LabelledImages]:
    """(training file, test file) as uint8 ``[N, 1, 28, 28]`` images and int64 labels.

    With ``download=True`` missing files are fetched by torchvision; if that fails (no
    internet) or is not allowed, a :class:`UserError` says which files to put where.
    """
    from torchvision.datasets import FashionMNIST  # torchvision is slow to import

    if download and not _all_present(root):
        try:
            FashionMNIST(root, train=True, download=True)  # fetches all four files
        except (OSError, RuntimeError) as error:  # URLError is an OSError
            raise _missing_files_error(root, "the download failed") from error
    if not _all_present(root):
        raise _missing_files_error(root, "downloading is off")

    files = []
    for train in (True, False):
        try:
            dataset = FashionMNIST(root, train=train, download=False)
        except (OSError, RuntimeError, ValueError, AssertionError) as error:  # torchvision asserts on bad headers
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(
                f"could not read Fashion-MNIST from {raw_dir(root)} ({first_line}); replace the four IDX files."
            ) from error
        files.append(LabelledImages(dataset.data.unsqueeze(1).contiguous(), dataset.targets.long()))
    return files[0], files[1]


def _all_present(root: Path) -> bool:
    return all((raw_dir(root) / name).is_file() for name in RAW_FILES)


def _missing_files_error(root: Path, why: str) -> UserError:
    missing = [name for name in RAW_FILES if not (raw_dir(root) / name).is_file()]
    return UserError(
        f"Fashion-MNIST is missing from {raw_dir(root)} and {why}: put the uncompressed IDX files "
        f"{', '.join(missing)} there (or point --data-dir or CLASSICNETS_DATA at the folder that holds "
        "FashionMNIST/raw)."
    )
