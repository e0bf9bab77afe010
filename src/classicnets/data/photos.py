"""Photo datasets by name: Dogs-vs-Cats (``cats-vs-dogs``), any image folder
(``folder:PATH``), CIFAR-10 and STL-10 (``cifar10``, ``stl10``).

They are built by :func:`~classicnets.data.build_data` like every dataset; their sources
live in :mod:`~classicnets.data.file_datasets` (files: layouts, manifests, checks, the
decoded cache) and :mod:`~classicnets.data.array_datasets` (CIFAR-10, STL-10). This module
keeps the names other commands use: the dataset lists, :func:`dataset_slug`,
:func:`list_images` and :func:`open_split` (``classicnets split`` and ``stats``).
"""

from __future__ import annotations

import os

from ..errors import UserError
from .array_datasets import ARRAY_DATASETS, array_split_indices
from .file_datasets import FILE_DATASETS, FOLDER_PREFIX, FileSource, SplitImages, dataset_slug
from .manifest import ImageList
from .registry import get_source, is_photo_dataset, list_photo_datasets

__all__ = [
    "ARRAY_DATASETS", "FILE_DATASETS", "FOLDER_PREFIX", "SplitImages", "array_split_indices", "dataset_slug",
    "is_photo_dataset", "list_images", "list_photo_datasets", "open_split",
]


def _file_source(name: str) -> FileSource:
    source = get_source(name)
    if not isinstance(source, FileSource):
        raise UserError(f"{name} ships as fixed train/test arrays, not image files; "
                        f"only cats-vs-dogs and folder:PATH have files to split.")
    return source


def list_images(name: str, data_dir: str | os.PathLike | None) -> ImageList:
    """The files of a file dataset (``cats-vs-dogs`` or ``folder:PATH``), unsplit."""
    return _file_source(name).list_images(data_dir)


def open_split(name: str, data_dir: str | os.PathLike | None, manifest: str | os.PathLike | None = None) -> SplitImages:
    """A file dataset with its split (see :mod:`~classicnets.data.file_datasets` for where it comes from)."""
    return _file_source(name).open_split(data_dir, manifest)
