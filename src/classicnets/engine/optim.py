"""Optimizers, the learning-rate schedule, the loss and gradient clipping.

Weight decay goes to the weight matrices and convolution kernels only: decaying biases
and batch-norm scales (the 1-D parameters) only fights the normalisation and is
customary to skip.

The schedule is a pure function of the step (plus, for "plateau", what validation
accuracy has done), so resuming needs only a few numbers and raising the number of
epochs simply re-plans the curve over the new total.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from ..models.protocol import aux_loss_weights, is_aux_output, weighted_aux_loss
from ..errors import UserError
from .config import TrainConfig
from .transfer import param_groups

ONECYCLE_DEFAULT_RISE = 0.3  # fraction of training one-cycle rises over when warmup_epochs is 0


def build_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    # Body and head, each split into decaying weights and non-decaying 1-D parameters;
    # frozen parameters are left out. Each group's lr_scale is applied by LRSchedule.
    backbone_lr = config.lr if config.backbone_lr is None else config.backbone_lr
    groups = param_groups(model, backbone_lr=backbone_lr, head_lr=config.lr, weight_decay=config.weight_decay)
    if not groups:
        raise UserError("nothing to train: every parameter is frozen.")
    fused = {"fused": True} if device.type in fused_optimizer_devices() else {}
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0, **fused)
    if config.optimizer == "adam":  # coupled L2 decay, as Adam defines it
        return torch.optim.Adam(groups, lr=config.lr, betas=tuple(config.betas), **fused)
    if config.optimizer == "adamw":  # decoupled decay (Loshchilov & Hutter)
        return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), **fused)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")  # config.validate() rules this out


def fused_optimizer_devices() -> tuple[str, ...]:
    """Devices whose optimizers run fused: one kernel per step on the GPU, and on the CPU one
    pass over each parameter instead of several with temporaries as large as the model
    (VGG16's 134 M parameters: 0.1 s instead of 0.9 s a step on 2 cores, BENCHMARKS.md "Speed
    against a plain loop"). MPS is left out: its fused kernels are newer than this rule."""
    try:  # torch lists them; CPU joined in torch 2.4
        from torch.optim.optimizer import _get_fused_kernels_supported_devices
        supported = set(_get_fused_kernels_supported_devices())
    except (ImportError, AttributeError):
        supported = {"cuda"}
    return tuple(d for d in ("cuda", "cpu") if d in supported)


class LRSchedule:
    """Per-step learning rate: linear warm-up, then cosine, onecycle, step or plateau.

    * cosine: half a cosine from ``lr`` down to ``lr * min_lr_factor``.
    * onecycle: Smith's one-cycle, a linear rise from ``lr * warmup_start_factor`` to
      ``lr`` (over ``warmup_epochs``, or the first 30% of training when that is 0), then
      a linear fall to ``lr * min_lr_factor``.
    * step: ``lr * step_gamma ** (epoch // step_epochs)``.
    * plateau: the VGG paper's rule, ``lr`` divided by 10 (``plateau_factor``) whenever
      validation accuracy has not improved for ``plateau_patience`` epochs, at most
      ``plateau_max_reductions`` times. Fed by :meth:`end_epoch`.

    Call :meth:`step` once before each optimizer step; it sets and returns the lr.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> None:
        self.optimizer = optimizer
        self.config = config
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = max(1, config.epochs * steps_per_epoch)
        warmup_epochs = config.warmup_epochs
        if config.scheduler == "onecycle" and warmup_epochs == 0:
            warmup_epochs = ONECYCLE_DEFAULT_RISE * config.epochs
        self.warmup_steps = min(self.total_steps, round(warmup_epochs * steps_per_epoch))
        self.steps_done = 0
        self.reductions = 0  # plateau state
        self.best_metric = -math.inf
        self.epochs_without_improvement = 0

    def lr_at(self, step: int) -> float:
        c = self.config
        if step < self.warmup_steps:
            progress = step / self.warmup_steps
            return c.lr * (c.warmup_start_factor + (1 - c.warmup_start_factor) * progress)
        decay_progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        if c.scheduler == "cosine":
            factor = c.min_lr_factor + (1 - c.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * decay_progress))
        elif c.scheduler == "onecycle":
            factor = 1 - (1 - c.min_lr_factor) * decay_progress
        elif c.scheduler == "step":
            factor = c.step_gamma ** (step // self.steps_per_epoch // c.step_epochs)
        else:  # plateau
            factor = c.plateau_factor ** self.reductions
        return c.lr * factor

    def step(self) -> float:
        lr = self.lr_at(self.steps_done)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # the body may train slower than the head
        self.steps_done += 1
        return lr

    def end_epoch(self, val_accuracy: float) -> None:
        """The plateau rule; the other schedules ignore validation."""
        if self.config.scheduler != "plateau":
            return
        if val_accuracy > self.best_metric:
            self.best_metric = val_accuracy
            self.epochs_without_improvement = 0
            return
        self.epochs_without_improvement += 1
        if (self.epochs_without_improvement >= self.config.plateau_patience
                and self.reductions < self.config.plateau_max_reductions):
            self.reductions += 1
            self.epochs_without_improvement = 0

    def state_dict(self) -> dict[str, Any]:
        return {"steps_done": self.steps_done, "reductions": self.reductions,
                "best_metric": self.best_metric, "epochs_without_improvement": self.epochs_without_improvement}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps_done = state["steps_done"]
        self.reductions = state["reductions"]
        self.best_metric = state["best_metric"]
        self.epochs_without_improvement = state["epochs_without_improvement"]


def training_loss(outputs: torch.Tensor | tuple, labels: torch.Tensor, criterion: nn.Module,
                  aux_weight: float | Mapping[str, float] | None = None,
                  model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss to minimise and the main logits.

    A network with auxiliary classifiers returns them in training mode beside its logits
    (a NamedTuple: ``logits``, then one field per auxiliary output); their losses are added
    with a weight each: ``aux_weight`` for every one when it is a number, per output when it
    is a mapping, else the model's own (its ``aux_outputs``: GoogLeNet's two at 0.3, as
    the paper adds them, Inception v3's one at 0.4).
    """
    if not is_aux_output(outputs):
        return criterion(outputs, labels), outputs
    if isinstance(aux_weight, Mapping):
        weights = dict(aux_weight)
    elif model is not None:
        weights = aux_loss_weights(model, aux_weight)
    elif aux_weight is not None:
        weights = {name: float(aux_weight) for name in outputs._fields[1:]}
    else:
        raise ValueError("auxiliary outputs need a loss weight: pass aux_weight or the model")
    return weighted_aux_loss(outputs, labels, criterion, weights), outputs.logits


def clip_gradients(model: nn.Module, max_norm: float | None) -> None:
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
