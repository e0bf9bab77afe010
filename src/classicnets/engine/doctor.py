"""The training doctor: a run whose training accuracy is still at chance after a few hundred
steps (its loss still near ln C) is told so once, with the likely causes for its model and
settings, and goes on training.

A loss stuck at chance is the most common complaint when a classic network is trained from
scratch (VGG without batch norm above all): the cause is nearly always the learning rate,
the lack of a warm-up, or a deep plain network that the VGG paper itself started from a
shallower one (section 3.1, "staged initialisation"). Only the model's own structure and
the run's settings are consulted, never its family's name.
"""

from __future__ import annotations

import math

from torch import nn

from .config import TrainConfig

# Steps (batches) before a run is judged: early steps of a healthy run are near chance too.
MIN_STEPS = 300
# Chance is 1/C; a window this close to it has learnt nothing yet (2 classes: under 57%).
CHANCE_MARGIN = 0.1  # relative
CHANCE_FLOOR = 0.02  # absolute


class TrainingDoctor:
    def __init__(self, model: nn.Module, config: TrainConfig, num_classes: int) -> None:
        self.config, self.num_classes = config, num_classes
        self.batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        self.conv_layers = sum(isinstance(m, nn.Conv2d) for m in model.modules())
        self.spoken = num_classes < 2

    def stalled(self, accuracy: float) -> bool:
        chance = 1 / self.num_classes
        return accuracy < chance * (1 + CHANCE_MARGIN) + CHANCE_FLOOR

    def check(self, steps_done: int, window_loss: float, window_accuracy: float) -> str | None:
        """The diagnosis, the first time the run is judged stalled; None otherwise."""
        if self.spoken or steps_done < MIN_STEPS or not self.stalled(window_accuracy):
            return None
        self.spoken = True
        return self.diagnosis(steps_done, window_loss, window_accuracy)

    def diagnosis(self, steps_done: int, loss: float, accuracy: float) -> str:
        config, classes = self.config, self.num_classes
        causes = []
        if not self.batch_norm:
            causes.append(f"this network has no batch norm, so it trains only in a narrow band of learning "
                          f"rates: lr {config.lr:g} may be too high (the loss jumps to chance and stays) or too "
                          f"low; try a tenth of it, or the same network with batch norm")
        else:
            causes.append(f"the learning rate (lr {config.lr:g} with {config.optimizer}) may be too high or too "
                          f"low; `classicnets lr-find` measures a good one")
        if config.warmup_epochs == 0 and config.scheduler != "onecycle":
            causes.append("there is no warm-up: --warmup-epochs 1 starts at a small rate and rises to lr")
        if not self.batch_norm and self.conv_layers >= 10:
            causes.append(f"a deep plain network ({self.conv_layers} convolutions) may not start at all from "
                          f"random weights; the VGG paper trained its shallow configuration A first and started "
                          f"the deeper ones from it (--init-from RUN --init-mode vgg-staged)")
        if config.freeze:
            causes.append("only the head trains (--freeze features): the frozen features may not fit this data")
        if config.augment and any(v not in (None, False, 0, 0.0) for v in config.augment.values()):
            causes.append("strong augmentation at a small image size can hide the images' classes at first; "
                          "try without it")
        numbered = "; ".join(f"({i}) {cause}" for i, cause in enumerate(causes, start=1))
        return (f"training doctor: after {steps_done:,} steps the training accuracy is {100 * accuracy:.1f}%, "
                f"chance for {classes} classes is {100 / classes:.1f}%, and the training loss is {loss:.3f} "
                f"(a network that guesses scores ln {classes} = {math.log(classes):.3f}, more with auxiliary "
                f"heads): it has not started to learn. Likely causes: {numbered}. Training goes on.")
