"""Every dataset by name: ``fashion-mnist``, ``cifar10``, ``stl10``, ``cats-vs-dogs`` and
``folder:PATH``, each a :class:`~classicnets.data.sources.DatasetSource`."""

from __future__ import annotations

import difflib
from typing import Any, Mapping

from ..errors import UserError
from .array_datasets import ARRAY_DATASETS, ArraySource
from .fashion_mnist import FASHION_MNIST
from .file_datasets import FILE_DATASETS, FOLDER_PREFIX, FileSource
from .sources import DatasetSource

_SOURCES: dict[str, DatasetSource] = {
    source.name: source
    for source in (FASHION_MNIST, *map(ArraySource, ARRAY_DATASETS), *map(FileSource, FILE_DATASETS))
}


def register_dataset(source: DatasetSource) -> None:
    """Add a dataset under ``source.name``."""
    if source.name in _SOURCES or source.name.startswith(FOLDER_PREFIX):
        raise ValueError(f"dataset {source.name!r} is registered twice")
    _SOURCES[source.name] = source


def list_datasets() -> list[str]:
    """Every dataset name ``build_data`` takes; ``folder:PATH`` stands for any image folder."""
    return sorted([*_SOURCES, f"{FOLDER_PREFIX}PATH"])


def is_known_dataset(name: str) -> bool:
    return name in _SOURCES or name.startswith(FOLDER_PREFIX)


def is_photo_dataset(name: str) -> bool:
    """A dataset of photos (photo augmentation, RGB): all but Fashion-MNIST."""
    return name.startswith(FOLDER_PREFIX) or (name in _SOURCES and _SOURCES[name].photo)


def list_photo_datasets() -> list[str]:
    return sorted([*(name for name, source in _SOURCES.items() if source.photo), f"{FOLDER_PREFIX}PATH"])


def get_source(name: str) -> DatasetSource:
    """The source of dataset ``name``; a UserError, with near names, for an unknown one."""
    if name.startswith(FOLDER_PREFIX):
        return FileSource(name)
    if name not in _SOURCES:
        close = difflib.get_close_matches(name, list(_SOURCES), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"unknown dataset {name!r}{hint}; known datasets: {', '.join(list_datasets())}.")
    return _SOURCES[name]


get_dataset_source = get_source  # the name before every dataset was a source


def unused_settings(name: str, settings: Mapping[str, Any]) -> list[str]:
    """The settings in ``settings`` (name -> value the user gave) that dataset ``name`` would
    ignore, sorted: e.g. ``val_size`` for ``cats-vs-dogs``, whose split comes from its manifest,
    its layout or the default 80/10/10. Only the settings some datasets ignore are judged
    (:data:`~classicnets.data.sources.OPTIONAL_SETTINGS`); a value of None or False counts as
    not given. Pass only what the user set, not defaults."""
    return get_source(name).unused_settings(settings)
