"""TensorBoard event files for a run (``--tensorboard``), in ``RUN_DIR/tensorboard``.

Per logging step: the training loss. Per epoch: train/val loss and accuracy, learning rate
and images per second, and the curves as an image. At the end: the test confusion matrix
as an image and the run's hyperparameters with its final metrics (the HPARAMS tab).

Every scalar is logged at the global optimizer-step count, so one purge point serves them
all: a resumed run opens the log with ``purge_step`` just after its last committed epoch,
and TensorBoard drops whatever the interrupted process logged beyond it. No duplicate
steps, one continuous log.

TensorBoard is imported only when asked for, so runs without it pay nothing.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

TENSORBOARD_DIR = "tensorboard"


class TensorBoardLog:
    def __init__(self, run_dir: Path, steps_per_epoch: int, epochs_done: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("--tensorboard needs the tensorboard package; pip install tensorboard "
                            "(or classicnets[tensorboard]).") from None
        self.steps_per_epoch = steps_per_epoch
        purge = epochs_done * steps_per_epoch + 1 if epochs_done else None
        self.writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD_DIR), purge_step=purge)

    def global_step(self, epoch: int, step: int) -> int:
        return (epoch - 1) * self.steps_per_epoch + step

    def training_step(self, epoch: int, step: int, loss: float) -> None:
        self.writer.add_scalar("train/loss_step", loss, self.global_step(epoch, step))

    def epoch(self, row: dict[str, Any], curves_png: Path | None) -> None:
        step = self.global_step(row["epoch"], self.steps_per_epoch)
        for tag, key in (("train/loss", "train_loss"), ("train/accuracy", "train_acc"), ("val/loss", "val_loss"),
                         ("val/accuracy", "val_acc"), ("lr", "lr"), ("images_per_s", "images_per_s")):
            self.writer.add_scalar(tag, row[key], step)
        if curves_png is not None and curves_png.is_file():
            self.writer.add_image("curves", png_pixels(curves_png), step, dataformats="HWC")
        self.writer.flush()

    def finish(self, confusion_png: Path, hyperparameters: dict[str, Any], metrics: dict[str, float],
               epoch: int) -> None:
        step = self.global_step(epoch, self.steps_per_epoch)
        if confusion_png.is_file():
            self.writer.add_image("test/confusion_matrix", png_pixels(confusion_png), step, dataformats="HWC")
        self.writer.add_hparams(plain_hparams(hyperparameters), metrics, run_name=".", global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def png_pixels(path: Path) -> np.ndarray:
    """An RGB uint8 array of a PNG the run wrote (matplotlib reads its own PNGs)."""
    from matplotlib.image import imread

    pixels = imread(io.BytesIO(path.read_bytes()), format="png")
    return (pixels[..., :3] * 255).round().astype(np.uint8)


def plain_hparams(config: dict[str, Any]) -> dict[str, Any]:
    """TensorBoard's HPARAMS take numbers, texts and booleans: lists and mappings become text,
    None becomes "none"."""
    plain = {}
    for key, value in config.items():
        if isinstance(value, (bool, int, float, str)):
            plain[key] = value
        else:
            plain[key] = "none" if value is None else str(value)
    return plain
