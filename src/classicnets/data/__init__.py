"""Datasets as device-ready batches: seeded stratified splits, exact normalisation
statistics, batched augmentation on the training device.

Use :func:`build_data`; it returns a :class:`DataBundle` of train/val/test
:class:`Batcher` objects that yield ``(float32 images [B, C, S, S], int64 labels [B])``.
Every dataset is a :class:`DatasetSource` (:mod:`~classicnets.data.sources`), found by
name with :func:`get_source`; :func:`unused_settings` names the settings a dataset ignores.

Modules, lowest first (none imports one above it): ``splits``, ``image_io``, ``augment``,
``photo_augment``, ``batchers``, ``manifest``, ``photo_cache``, ``pixel_stats``,
``validate``; ``sources`` (the protocol); ``fashion_mnist``, ``array_datasets``,
``file_datasets`` (the sources); ``registry``; ``build``, ``stats``, ``photos``.
"""

from .augment import (AUGMENT_DEFAULTS, AUGMENT_KEYS, AugmentConfig, BatchTransform, random_crop, random_erasing,
                      random_hflip, resize)
from .batchers import LOADERS, Batcher, BatchPlan, DeviceBatcher, ImageTensorDataset, LoaderBatcher, batcher_factory
from .build import DataBundle, build_data, check_arguments
from .fashion_mnist import CLASS_NAMES as FASHION_MNIST_CLASSES
from .fashion_mnist import load_fashion_mnist
from .registry import (get_dataset_source, get_source, is_known_dataset, is_photo_dataset, list_datasets,
                       register_dataset, unused_settings)
from .sources import (OPTIONAL_SETTINGS, DataRequest, DatasetSource, LabelledImages, SourceData, TensorPairSource,
                      resolve_data_dir)
from .splits import channel_mean_std, derive_seed, scaled_val_size, split_indices, stratified_split

__all__ = [
    "AUGMENT_DEFAULTS", "AUGMENT_KEYS", "FASHION_MNIST_CLASSES", "LOADERS", "OPTIONAL_SETTINGS", "AugmentConfig",
    "BatchPlan", "BatchTransform", "Batcher", "DataBundle", "DataRequest", "DatasetSource", "DeviceBatcher",
    "ImageTensorDataset", "LabelledImages", "LoaderBatcher", "SourceData", "TensorPairSource", "batcher_factory",
    "build_data", "channel_mean_std", "check_arguments", "derive_seed", "get_dataset_source", "get_source",
    "is_known_dataset", "is_photo_dataset", "list_datasets", "load_fashion_mnist", "random_crop", "random_erasing",
    "random_hflip", "register_dataset", "resize", "resolve_data_dir", "scaled_val_size", "split_indices",
    "stratified_split", "unused_settings",
]
