"""What a run leaves for people: metrics.csv, curves.png, confusion_matrix.png, summary.json.

Figures are drawn on matplotlib's ``Figure`` directly (Agg canvas, no pyplot), so no
display or global backend state is involved.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path
from typing import Any, Sequence

import torch

from ..files import atomic_write_bytes

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds", "images_per_s")


def write_metrics_csv(path: Path, history: Sequence[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({key: row[key] for key in METRIC_COLUMNS})
    atomic_write_bytes(path, buffer.getvalue().encode())


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def save_figure(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())


def train_loss_terms(label_smoothing: float, aux_weight: float | None) -> list[str]:
    """What the training loss adds to plain cross-entropy, named for the curves' legend.

    ``aux_weight`` is None when the model has no auxiliary heads (VGG, or GoogLeNet built
    with ``aux_logits=False``).
    """
    terms = []
    if label_smoothing > 0:
        terms.append(f"label smoothing {label_smoothing:g}")
    if aux_weight:
        terms.append(f"aux heads x {aux_weight:g}")
    return terms


def plot_curves(path: Path, history: Sequence[dict[str, Any]], title: str,
                loss_terms: Sequence[str] = ()) -> None:
    """Write ``curves.png``: see :func:`curves_figure`."""
    save_figure(curves_figure(history, title, loss_terms), path)


def curves_figure(history: Sequence[dict[str, Any]], title: str, loss_terms: Sequence[str] = ()):
    """Loss and accuracy per epoch, training against validation.

    ``loss_terms`` (see :func:`train_loss_terms`) say why the training loss can sit above
    the validation loss, which is plain cross-entropy of the main classifier.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, acc_axes = figure.subplots(1, 2)
    for axes, metric, label in ((loss_axes, "loss", "loss"), (acc_axes, "acc", "accuracy")):
        axes.plot(epochs, [row[f"train_{metric}"] for row in history], marker="o", label="train")
        axes.plot(epochs, [row[f"val_{metric}"] for row in history], marker="o", label="validation")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend()
    if loss_terms:
        loss_axes.set_title(f"loss (train: with {' and '.join(loss_terms)})", fontsize=9)
    figure.suptitle(title)
    return figure


def plot_confusion_matrix(path: Path, confusion: torch.Tensor, class_names: Sequence[str], title: str) -> None:
    """Counts with row-normalised shading: row = true class, column = prediction."""
    from matplotlib.figure import Figure

    counts = confusion.to(torch.float64)
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(class_names)
    size = max(5.0, 0.6 * n + 2)
    figure = Figure(figsize=(size + 1, size), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="fraction of the true class")
    axes.set_xticks(range(n), class_names, rotation=45, ha="right")
    axes.set_yticks(range(n), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for row in range(n):
        for col in range(n):
            colour = "white" if rates[row, col] > 0.5 else "black"
            axes.text(col, row, str(int(counts[row, col])), ha="center", va="center", fontsize=7, color=colour)
    axes.set_title(title)
    save_figure(figure, path)


def git_commit(directory: Path) -> str | None:
    """The commit of the checkout holding ``directory``, if it is one and git exists."""
    try:
        result = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def format_per_class(per_class: dict[str, float]) -> str:
    width = max(len(name) for name in per_class)
    return "\n".join(f"  {name:<{width}}  {100 * acc:6.2f}%" for name, acc in per_class.items())
