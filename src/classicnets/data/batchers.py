"""Batchers: iterate one split as (normalised images, labels) batches on the training device.

Two implementations share one plan of which images go into which batch:

* :class:`DeviceBatcher` keeps the uint8 images on the device and gathers each batch
  by indexing (no worker processes, no host-to-device copies per step);
* :class:`LoaderBatcher` reads the same uint8 tensor through a torch ``DataLoader``.

Both then run the same :class:`~classicnets.data.augment.BatchTransform` on the device,
so for the same seed and epoch they yield identical batches.

Order and sharding, for ``world_size`` ranks:

* training splits are shuffled by a permutation seeded with ``(seed, epoch)``, the same
  on every rank; rank ``r`` takes every ``world_size``-th entry starting at ``r``. The
  permutation is first cut to a multiple of ``world_size`` so all ranks get the same
  number of samples (the few left over change from epoch to epoch). Then the last
  partial batch is dropped, unless it is the only batch (a subset smaller than one batch
  still trains);
* evaluation splits keep their order; rank ``r`` takes positions ``r, r + world_size, ...``,
  so the ranks' shards are disjoint, cover the split exactly once, and differ in size by
  at most one sample. The last partial batch is kept.

Augmentation randomness is seeded with ``(seed, epoch, rank)``.

:func:`batcher_factory` is the one place that decides which implementation reads a
dataset's images (:data:`LOADERS`) and builds the batchers of every dataset.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .splits import derive_seed

Batch = tuple[torch.Tensor, torch.Tensor]
# A batch transform: uint8 [B, C, H, W] (and a generator when augmenting) -> float32 [B, C, S, S].
# It has an ``augment`` attribute, None when it does not augment (augment.BatchTransform,
# photo_augment.PhotoTransform).
Transform = Callable[..., torch.Tensor]

# How a dataset's images reach the batches: "device" keeps the uint8 images on the training
# device, "dataloader" reads them through a torch DataLoader, "auto" picks "device" when the
# images take at most DEVICE_MEMORY_SHARE of the device's free memory (always on the CPU).
LOADERS = ("auto", "device", "dataloader")
DEVICE_MEMORY_SHARE = 0.4


class Batcher(ABC):
    """One split, one rank: ``len()`` batches of ``(float32 [B, C, S, S], int64 [B])`` per epoch."""

    def __init__(
        self,
        indices: torch.Tensor,
        *,
        batch_size: int,
        train: bool,
        transform: Transform,
        device: torch.device,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.indices = indices.cpu().to(torch.int64)  # positions of this split's images in the image tensor
        self.batch_size = batch_size
        self.train = train
        self.transform = transform
        # "cuda" and "cuda:0" name the same device but compare unequal; ask torch which one it means.
        self.device = torch.empty(0, device=device).device
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.num_samples, self._num_batches = self._plan_sizes()

    def _plan_sizes(self) -> tuple[int, int]:
        n = self.indices.numel()
        if not self.train:
            per_rank = len(range(self.rank, n, self.world_size))
            return per_rank, math.ceil(per_rank / self.batch_size)
        per_rank = n // self.world_size
        if per_rank == 0:
            raise ValueError(f"{n} training samples cannot be shared by {self.world_size} ranks")
        if per_rank < self.batch_size:
            return per_rank, 1
        num_batches = per_rank // self.batch_size
        return num_batches * self.batch_size, num_batches

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be 0 or more, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        return self._num_batches

    def epoch_order(self) -> torch.Tensor:
        """Image positions this rank yields in the current epoch, in order (CPU int64)."""
        if not self.train:
            return self.indices[self.rank :: self.world_size]
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "shuffle", self.epoch))
        permutation = torch.randperm(self.indices.numel(), generator=generator)
        usable = permutation.numel() // self.world_size * self.world_size
        mine = permutation[:usable][self.rank :: self.world_size]
        return self.indices[mine[: self.num_samples]]

    def augment_generator(self) -> torch.Generator | None:
        """A fresh generator on the batch device for this (seed, epoch, rank); None when not augmenting."""
        if not self.train or self.transform.augment is None:
            return None
        seed = derive_seed(self.seed, "augment", self.epoch, self.rank)
        return torch.Generator(device=self.device).manual_seed(seed)

    @abstractmethod
    def __iter__(self) -> Iterator[Batch]: ...


class DeviceBatcher(Batcher):
    """Batches gathered from uint8 ``images``/``labels`` that already live on ``device``.

    Several batchers (train and val) can share one image tensor: each only holds its
    split's index list.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, **kwargs) -> None:
        super().__init__(indices, **kwargs)
        if images.device != self.device or labels.device != self.device:
            raise ValueError(f"images and labels must already be on {self.device}")
        self.images = images
        self.labels = labels

    def __iter__(self) -> Iterator[Batch]:
        order = self.epoch_order().to(self.device)
        generator = self.augment_generator()
        for batch_indices in order.split(self.batch_size):
            images = self.images.index_select(0, batch_indices)
            yield self.transform(images, generator), self.labels.index_select(0, batch_indices)


class ImageTensorDataset(Dataset):
    """Map-style dataset over a uint8 image tensor ``[N, C, H, W]`` and int64 labels ``[N]``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


class _EpochBatchSampler(Sampler[list[int]]):
    """Hands the DataLoader its owner's batches for the owner's current epoch.

    The DataLoader iterates its batch sampler in the main process at the start of every
    epoch (persistent workers included), so ``set_epoch`` on the owner takes effect.
    """

    def __init__(self, owner: Batcher) -> None:
        self.owner = owner

    def __iter__(self) -> Iterator[list[int]]:
        for batch_indices in self.owner.epoch_order().split(self.owner.batch_size):
            yield batch_indices.tolist()

    def __len__(self) -> int:
        return len(self.owner)


class LoaderBatcher(Batcher):
    """Batches read from CPU uint8 tensors by a ``DataLoader``, then transformed on ``device``."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, *, num_workers: int = 2, **kwargs
    ) -> None:
        super().__init__(indices, **kwargs)
        self.loader = DataLoader(
            ImageTensorDataset(images.cpu(), labels.cpu()),
            batch_sampler=_EpochBatchSampler(self),
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=num_workers > 0,  # DataLoader refuses the flag without workers
        )

    def __iter__(self) -> Iterator[Batch]:
        generator = self.augment_generator()
        for images, labels in self.loader:
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            yield self.transform(images, generator), labels


@dataclass(frozen=True)
class BatchPlan:
    """How the batchers of one bundle read and share out their images."""

    batch_size: int
    eval_batch_size: int
    device: torch.device
    seed: int
    loader: str  # one of LOADERS
    num_workers: int
    rank: int
    world_size: int


def fits_on(device: torch.device, pixels: torch.Tensor) -> bool:
    """Whether ``pixels`` may stay on ``device`` under ``loader="auto"``."""
    if device.type != "cuda":
        return True  # the CPU path reads the tensor where it already is
    free, _ = torch.cuda.mem_get_info(device)
    return pixels.numel() * pixels.element_size() <= DEVICE_MEMORY_SHARE * free


def batcher_factory(images: torch.Tensor, labels: torch.Tensor, plan: BatchPlan, plain: Transform,
                    augmented: Transform) -> Callable[[torch.Tensor, bool], Batcher]:
    """``make(indices, train) -> Batcher`` over one shared uint8 tensor ``images`` and its ``labels``.

    On the device path the tensor is copied to the device once, here, and shared by every
    batcher made; training batchers use ``augmented``, evaluation ones ``plain``.
    """
    on_device = plan.loader == "device" or (plan.loader == "auto" and fits_on(plan.device, images))
    if on_device:
        images, labels = images.to(plan.device), labels.to(plan.device)

    def make(indices: torch.Tensor, train: bool) -> Batcher:
        options = dict(batch_size=plan.batch_size if train else plan.eval_batch_size, train=train,
                       transform=augmented if train else plain, device=plan.device, seed=plan.seed,
                       rank=plan.rank, world_size=plan.world_size)
        if on_device:
            return DeviceBatcher(images, labels, indices, **options)
        return LoaderBatcher(images, labels, indices, num_workers=plan.num_workers, **options)

    return make
