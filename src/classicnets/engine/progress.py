"""Console output of a run: a tqdm bar per epoch, or nothing but one line per epoch (quiet)."""

from __future__ import annotations

import sys
from typing import Any


class EpochProgress:
    """The bar of one training epoch (stderr): loss, accuracy, img/s and tqdm's ETA."""

    def __init__(self, epoch: int, epochs: int, steps: int, quiet: bool) -> None:
        self.bar = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="step",
                            leave=False, dynamic_ncols=True, file=sys.stderr)

    def update(self, steps: int, loss: float, accuracy: float, images_per_s: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{100 * accuracy:.2f}%",
                                 img_s=f"{images_per_s:,.0f}", refresh=False)
            self.bar.update(steps)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def epoch_line(row: dict[str, Any], epochs: int, best: bool) -> str:
    return (f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:6.2f}%"
            f"  val loss {row['val_loss']:.4f} acc {100 * row['val_acc']:6.2f}%  lr {row['lr']:.3g}"
            f"  {row['epoch_seconds']:.1f}s {row['images_per_s']:,.0f} img/s" + ("  *best" if best else ""))


def say(text: str) -> None:
    print(text, flush=True)
