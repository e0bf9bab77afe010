"""Scoring a model over a whole data split: loss, accuracy and the confusion matrix, what
the training loop validates and tests with (the ``evaluate`` command's fuller report is
analysis/evaluation_report.py).

Under ``torchrun`` each rank evaluates its own disjoint shard of the split and the sums
are added over ranks, so every rank (and rank 0's report) sees the whole split's figures.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import all_reduce_sum


@dataclass
class EvalResult:
    loss: float  # mean cross-entropy (no label smoothing), comparable across recipes
    accuracy: float  # fraction in [0, 1]
    confusion: torch.Tensor  # int64 [true class, predicted class]
    num_samples: int

    def per_class_accuracy(self) -> list[float]:
        totals = self.confusion.sum(dim=1).clamp(min=1)
        return (self.confusion.diag().double() / totals.double()).tolist()


def autocast_for(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` (CUDA or the CPU) when asked, else float32."""
    if bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    *,
    device: torch.device,
    bf16: bool = False,
    channels_last: bool = False,
    tta_flip: bool = False,
) -> EvalResult:
    """Run ``model`` in eval mode over every batch; ``tta_flip`` averages the logits of
    each image and its mirror image. Sums stay on the device: one sync at the end.

    In a distributed job every rank must call this (with its shard); the result is global."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    count = torch.zeros((), dtype=torch.int64, device=device)
    for images, labels in batches:
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_for(device, bf16):
            logits = model(images)
            if tta_flip:
                logits = (logits + model(images.flip(-1))) / 2
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        predictions = logits.argmax(dim=1)
        confusion += torch.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
        count += labels.numel()
    model.train(was_training)
    for total in (loss_sum, confusion, count):
        all_reduce_sum(total)
    count = int(count.item())
    confusion = confusion.view(num_classes, num_classes).cpu()
    return EvalResult(
        loss=loss_sum.item() / max(count, 1),
        accuracy=confusion.diag().sum().item() / max(count, 1),
        confusion=confusion,
        num_samples=count,
    )
