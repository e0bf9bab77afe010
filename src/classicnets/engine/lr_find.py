"""The learning-rate range test (Smith, 2017, "Cyclical Learning Rates for Training Neural
Networks", section 3.3): train for a few hundred steps while the learning rate grows
exponentially from a tiny to a huge value, and watch the loss. It falls once the rate is
large enough to learn, then explodes once the rate is too large; a good peak rate lies a
little before the explosion.

The model, data and optimizer are built exactly as ``train`` builds them (the loop's
:func:`~classicnets.engine.loop.set_up`), so the suggestion fits the run it is for; nothing
is written to any run directory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from ..device import resolve_device
from ..errors import UserError
from .config import TrainConfig
from .distributed import DistContext
from .optim import training_loss
from .progress import EpochProgress

SMOOTHING = 0.98  # exponential moving average of the loss (bias-corrected)
EXPLOSION = 4.0  # stop when the smoothed loss exceeds this multiple of its minimum ...
ABOVE_START = 1.2  # ... or rises this far above where it started (cross-entropy saturates near ln C)


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]  # smoothed
    stopped_early: bool  # the loss exploded before end_lr

    @property
    def min_loss_lr(self) -> float:
        return self.lrs[min(range(len(self.losses)), key=self.losses.__getitem__)]

    @property
    def steepest_lr(self) -> float:
        """Where the smoothed loss falls fastest against log(lr), up to its minimum."""
        end = self.losses.index(min(self.losses))
        if end < 2:
            return self.lrs[end]
        slopes = [(self.losses[i + 1] - self.losses[i - 1]) / (math.log(self.lrs[i + 1]) - math.log(self.lrs[i - 1]))
                  for i in range(1, end)]
        return self.lrs[1 + min(range(len(slopes)), key=slopes.__getitem__)]

    @property
    def suggested_lr(self) -> float:
        """A tenth of the rate at the loss minimum: past the steepest fall, safely before the
        explosion (the usual reading of the range test)."""
        return self.min_loss_lr / 10


def lr_schedule(start_lr: float, end_lr: float, steps: int) -> list[float]:
    ratio = (end_lr / start_lr) ** (1 / max(steps - 1, 1))
    return [start_lr * ratio**i for i in range(steps)]


def endless(batches) -> Iterator:
    epoch = 0
    while True:
        batches.set_epoch(epoch)
        yield from batches
        epoch += 1


def find_lr(config: TrainConfig, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 200,
            quiet: bool = False) -> RangeTest:
    """Run the range test for ``config``'s model and data (its lr is replaced step by step)."""
    from . import loop  # the training loop's own set-up, so the test trains what train() would

    if not 0 < start_lr < end_lr:
        raise UserError(f"the range must rise: start lr {start_lr:g} must be above 0 and below end lr {end_lr:g}.")
    if steps < 10:
        raise UserError(f"the range test needs at least 10 steps, got {steps}.")
    config.validate()
    loop.get_model_entry(config.model)
    device = resolve_device(config.device)
    loop.seed_everything(config.seed)
    context = DistContext()  # one process
    with loop.reproducibility(config, device):
        session = loop.set_up(config, Path("."), device, context, None, quiet, None)
        return _sweep(session, lr_schedule(start_lr, end_lr, steps), quiet)


def _sweep(session, lrs: list[float], quiet: bool) -> RangeTest:
    base = [group["lr"] for group in session.optimizer.param_groups]  # backbone_lr keeps its ratio
    top = max(base)
    session.model.train()
    bar = EpochProgress(1, 1, len(lrs), quiet)
    smoothed, best, tried, losses = 0.0, math.inf, [], []
    exploded = False
    for step, (lr, (images, labels)) in enumerate(zip(lrs, endless(session.data.train)), start=1):
        for group, group_base in zip(session.optimizer.param_groups, base):
            group["lr"] = lr * group_base / top
        if session.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        session.optimizer.zero_grad(set_to_none=True)
        with session.autocast:
            loss, _ = training_loss(session.step_model(images), labels, session.criterion,
                                    session.config.aux_weight, session.model)
        value = loss.item()
        if not math.isfinite(value):
            exploded = True
            break
        loss.backward()
        session.optimizer.step()
        smoothed = SMOOTHING * smoothed + (1 - SMOOTHING) * value
        corrected = smoothed / (1 - SMOOTHING**step)
        tried.append(lr)
        losses.append(corrected)
        best = min(best, corrected)
        bar.update(1, corrected, 0.0, 0.0)
        if step > 10 and corrected > min(EXPLOSION * best, ABOVE_START * losses[0]):
            exploded = True
            break
    bar.close()
    if len(losses) < 5:
        raise UserError(f"the loss exploded within {len(losses)} steps, already at lr {lrs[len(losses)]:g}; "
                        f"start the range lower (--start-lr).")
    return RangeTest(tried, losses, exploded)


def plot_range_test(path: Path, result: RangeTest, title: str) -> None:
    """Loss against learning rate (log scale), the suggestion and the minimum marked."""
    from matplotlib.figure import Figure

    from .reports import save_figure

    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    axes.plot(result.lrs, result.losses, color="tab:blue", label="training loss (smoothed)")
    axes.set_xscale("log")
    axes.axvline(result.suggested_lr, color="tab:green", linestyle="--",
                 label=f"suggested lr {result.suggested_lr:.2g}")
    axes.axvline(result.min_loss_lr, color="tab:red", linestyle=":", label=f"loss minimum at {result.min_loss_lr:.2g}")
    low, high = min(result.losses), max(result.losses)
    axes.set_ylim(low - 0.05 * (high - low), min(high, low * EXPLOSION) + 0.05 * (high - low))
    axes.set_xlabel("learning rate")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    save_figure(figure, path)
