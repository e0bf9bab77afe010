"""Seeded, stratified splits and exact normalisation statistics.

Everything here is a pure function of its inputs and an integer seed, so a run can be
rebuilt (or resumed) from its config alone.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch


def derive_seed(*parts: int | str) -> int:
    """Mix a base seed with labels such as ``("shuffle", epoch, rank)`` into one 63-bit seed.

    ``seed + epoch`` style arithmetic makes neighbouring runs share streams (seed 1 at
    epoch 0 would equal seed 0 at epoch 1); numpy's SeedSequence hashes the parts instead.
    """
    words = [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
    if any(w < 0 for w in words):
        raise ValueError(f"seed parts must be non-negative, got {parts}")
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])  # < 2**63: fits every torch.Generator


def allocate_per_class(class_counts: torch.Tensor, total: int) -> torch.Tensor:
    """Split ``total`` across classes in proportion to ``class_counts`` (largest remainder).

    The shares add up to ``total`` exactly and each is within one of the exact proportion,
    so balanced classes get identical shares (6,000 of 60,000 over 10 classes -> 600 each).
    """
    # Integer arithmetic: float division could floor 600 to 599.
    scaled = class_counts.to(torch.int64) * total
    population = int(class_counts.sum())
    shares = scaled // population
    leftover = total - int(shares.sum())
    # Stable sort keeps ties in class order, so the allocation is deterministic.
    by_remainder = torch.argsort(scaled % population, descending=True, stable=True)
    shares[by_remainder[:leftover]] += 1
    return shares


def stratified_split(labels: torch.Tensor, second_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split positions ``0..len(labels)-1`` into (first, second) with ``len(second) == second_size``.

    Each class lands in ``second`` in proportion to its frequency; which members go is a
    seeded random choice. Both index tensors are sorted (int64, CPU).
    """
    labels = labels.cpu().to(torch.int64)
    if not 0 <= second_size <= labels.numel():
        raise ValueError(f"cannot take {second_size} of {labels.numel()} samples")
    classes, counts = torch.unique(labels, return_counts=True)
    shares = allocate_per_class(counts, second_size)
    generator = torch.Generator().manual_seed(seed)
    first, second = [], []
    for cls, share in zip(classes.tolist(), shares.tolist()):
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        second.append(members[:share])
        first.append(members[share:])
    return torch.cat(first).sort().values, torch.cat(second).sort().values


def scaled_val_size(val_size: int, subset: int, num_classes: int) -> int:
    """Validation size for a run that trains on ``subset`` images.

    Keeps the default 9:1 train:val ratio (54,000:6,000) so a 900-image smoke run validates
    on 100 images rather than 6,000, but never fewer than one per class and never more
    than ``val_size``.
    """
    return min(val_size, max(num_classes, subset // 9))


def split_indices(
    labels: torch.Tensor, *, val_size: int, subset: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified (train, val) positions into a training file, from ``seed`` alone.

    The full split comes first, so a ``subset`` run trains on a stratified sample of the
    same training part and validates on a stratified sample of the same validation part,
    shrunk by :func:`scaled_val_size`.
    """
    train, val = stratified_split(labels, val_size, derive_seed(seed, "split"))
    if subset is None:
        return train, val
    num_classes = int(labels.unique().numel())
    _, train_pick = stratified_split(labels[train], subset, derive_seed(seed, "subset", "train"))
    small_val = scaled_val_size(val_size, subset, num_classes)
    _, val_pick = stratified_split(labels[val], small_val, derive_seed(seed, "subset", "val"))
    return train[train_pick], val[val_pick]


def channel_mean_std(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std of uint8 images ``[N, C, H, W]`` on [0, 1].

    Computed from a 256-bin histogram per channel: the sums are exact integers, so the
    only rounding is the final float64 division.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1).cpu(), minlength=256).double()
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * (values - mean) ** 2).sum() / n
        means.append(float(mean / 255))
        stds.append(float(var.sqrt() / 255))
    return means, stds
