"""Datasets as device-ready batches: seeded stratified splits, exact normalisation
statistics, batched augmentation on the training device.

Use :func:`build_data`; it returns a :class:`DataBundle` of train/val/test
:class:`Batcher` objects that yield ``(float32 images [B, C, S, S], int64 labels [B])``.
"""

from .augment import AugmentConfig, BatchTransform, random_crop, random_erasing, random_hflip, resize
from .batchers import Batcher, DeviceBatcher, ImageTensorDataset, LoaderBatcher
from .build import (
    DataBundle,
    DatasetSource,
    LabelledImages,
    build_data,
    get_dataset_source,
    is_known_dataset,
    list_datasets,
    register_dataset,
    resolve_data_dir,
    split_indices,
)
from .fashion_mnist import CLASS_NAMES as FASHION_MNIST_CLASSES
from .fashion_mnist import load_fashion_mnist
from .splits import channel_mean_std, derive_seed, scaled_val_size, stratified_split

register_dataset(DatasetSource("fashion-mnist", FASHION_MNIST_CLASSES, load_fashion_mnist))

__all__ = [
    "FASHION_MNIST_CLASSES", "AugmentConfig", "BatchTransform", "Batcher", "DataBundle", "DatasetSource",
    "DeviceBatcher", "ImageTensorDataset", "LabelledImages", "LoaderBatcher", "build_data", "channel_mean_std",
    "derive_seed", "get_dataset_source", "is_known_dataset", "list_datasets", "load_fashion_mnist", "random_crop", "random_erasing",
    "random_hflip", "register_dataset", "resize", "resolve_data_dir", "scaled_val_size", "split_indices",
    "stratified_split",
]
