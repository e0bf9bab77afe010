"""Exponential moving average (EMA) of a model's weights.

When ``ema_decay`` is set, the averaged copy is what the run validates, selects the
best epoch with, saves as ``best.safetensors`` and tests: averaging the last few
thousand steps smooths out the noise of the final learning rates and usually scores a
little higher than the raw weights. Batch-norm running statistics are averaged too
(they are floating-point buffers); integer buffers (``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ModelEma:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay = decay
        self.updates = 0
        self._source: nn.Module | None = None  # the model the cached tensor lists below belong to
        self._pairs: tuple[list[torch.Tensor], ...] = ()

    def current_decay(self) -> float:
        # Ramp the decay up over the first steps, so a short run is not dominated by
        # the random initial weights (the correction TensorFlow's EMA uses).
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    def _tensor_lists(self, model: nn.Module) -> tuple[list[torch.Tensor], ...]:
        """(EMA floats, model floats, EMA integers, model integers), built once per model.

        state_dict() returns the live parameter and buffer tensors, and loading a state
        dict copies into them in place, so the lists stay valid for the whole run.
        """
        if self._source is not model:
            source = model.state_dict()
            averages = self.module.state_dict()
            floats = [name for name, t in averages.items() if t.dtype.is_floating_point]
            others = [name for name, t in averages.items() if not t.dtype.is_floating_point]
            self._pairs = ([averages[n] for n in floats], [source[n] for n in floats],
                           [averages[n] for n in others], [source[n] for n in others])
            self._source = model
        return self._pairs

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        ema_floats, model_floats, ema_others, model_others = self._tensor_lists(model)
        # One fused kernel per group instead of one per tensor: this runs every step.
        torch._foreach_lerp_(ema_floats, model_floats, 1 - self.current_decay())
        if ema_others:  # batch norm's step counters; plain VGG has none, and foreach refuses empty lists
            torch._foreach_copy_(ema_others, model_others)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "weights": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = state["updates"]
        self.module.load_state_dict(state["weights"])
