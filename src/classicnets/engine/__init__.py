"""Training: the loop (loop.py), its configuration, optimizers and schedules, EMA,
crash-safe checkpoints and the reports a run leaves behind.

Use :func:`train` with a :class:`TrainConfig` (from :func:`build_config` or
:func:`resume_config`), and :func:`load_run` to get a trained network back.
"""

from .checkpoint import load_run, read_weights
from .config import TrainConfig, build_config, load_recipe, resume_config
from .ema import ModelEma
from .split_scores import EvalResult, evaluate
from .loop import EXIT_DIVERGED, EXIT_INTERRUPTED, TrainingDiverged, TrainingInterrupted, train
from .optim import LRSchedule, build_optimizer, training_loss

__all__ = [
    "EXIT_DIVERGED", "EXIT_INTERRUPTED", "EvalResult", "LRSchedule", "ModelEma", "TrainConfig",
    "TrainingDiverged", "TrainingInterrupted", "build_config", "build_optimizer", "evaluate", "load_recipe",
    "load_run", "read_weights", "resume_config", "train", "training_loss",
]
