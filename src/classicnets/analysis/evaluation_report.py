"""Evaluating a trained network on a whole split, with the papers' test-time methods.

:func:`run_evaluation` runs a model over a batcher with a :class:`~.tta.TTAConfig`
(optionally in its dense form, :mod:`.dense`) and keeps every posterior plus the most
confident mistakes; :func:`evaluation_report` turns that into numbers (top-1, top-5,
per-class precision / recall / F1, expected calibration error, confusion matrix) and
:func:`write_evaluation` writes them as JSON and figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from ..files import atomic_write_bytes
from ..engine.reports import plot_confusion_matrix
from .dense import to_dense
from .figures import denormalize, grid_shape, output_dir, save_figure, show_image
from .metrics import calibration, check_finite_outputs, confusion_matrix, per_class_report, topk_accuracy
from .tta import TTAConfig, predict_proba

RESULTS_FILE = "evaluation.json"
CONFUSION_FILE = "confusion_matrix.png"
MISTAKES_FILE = "mistakes.png"
RELIABILITY_FILE = "reliability.png"
OUTPUT_FILES = (RESULTS_FILE, CONFUSION_FILE, MISTAKES_FILE, RELIABILITY_FILE)  # what write_evaluation writes


@dataclass
class Mistakes:
    """The most confident wrong predictions seen so far, highest confidence first."""

    images: torch.Tensor  # normalised, as the model saw them, on the CPU
    targets: torch.Tensor
    predictions: torch.Tensor
    confidence: torch.Tensor  # probability of the (wrong) predicted class
    indices: torch.Tensor  # positions in the split

    @classmethod
    def empty(cls) -> "Mistakes":
        none = torch.zeros(0, dtype=torch.int64)
        return cls(torch.zeros(0), none, none.clone(), torch.zeros(0), none.clone())

    def merge(self, other: "Mistakes", keep: int) -> "Mistakes":
        if self.indices.numel() == 0:
            pool = other
        else:
            pool = Mistakes(*(torch.cat([a, b]) for a, b in zip(self._fields(), other._fields())))
        order = pool.confidence.argsort(descending=True, stable=True)[:keep]
        return Mistakes(*(field[order] for field in pool._fields()))

    def _fields(self) -> tuple[torch.Tensor, ...]:
        return self.images, self.targets, self.predictions, self.confidence, self.indices


@dataclass
class Evaluation:
    probs: torch.Tensor  # [N, classes], float32, CPU: averaged soft-max posteriors
    targets: torch.Tensor  # [N], int64, CPU
    mistakes: Mistakes
    tta: TTAConfig
    dense: bool


@torch.no_grad()
def run_evaluation(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    tta: TTAConfig,
    *,
    dense: bool = False,
    num_mistakes: int = 16,
    weights: str | None = None,
    data: str = "this data",
) -> Evaluation:
    """Posteriors for every image of ``batches`` (which should have ``tta.input_size()`` px).

    Posteriors with NaN stop it with a UserError naming ``weights`` and ``data``.
    """
    was_training = model.training
    model.eval()
    network = to_dense(model).eval() if dense else model
    all_probs, all_targets = [], []
    mistakes, seen = Mistakes.empty(), 0
    try:
        for images, targets in batches:
            probs = predict_proba(network, images, tta)
            check_finite_outputs(probs, weights, data)
            all_probs.append(probs.cpu())
            all_targets.append(targets.cpu())
            mistakes = mistakes.merge(_batch_mistakes(images, targets, probs, seen, num_mistakes), num_mistakes)
            seen += targets.numel()
    finally:
        model.train(was_training)
    if not all_probs:
        raise ValueError("the split yielded no batches")
    return Evaluation(torch.cat(all_probs), torch.cat(all_targets), mistakes, tta, dense)


def _batch_mistakes(images: torch.Tensor, targets: torch.Tensor, probs: torch.Tensor,
                    offset: int, keep: int) -> Mistakes:
    confidence, predictions = probs.max(dim=1)
    wrong = (predictions != targets).nonzero().flatten()
    wrong = wrong[confidence[wrong].argsort(descending=True)[:keep]]  # only these leave the device
    return Mistakes(images[wrong].float().cpu(), targets[wrong].cpu(), predictions[wrong].cpu(),
                    confidence[wrong].cpu(), wrong.cpu() + offset)


def evaluation_report(evaluation: Evaluation, class_names: Sequence[str], num_bins: int = 15) -> dict[str, Any]:
    """Every number of an evaluation as a JSON-ready dict (accuracies as fractions)."""
    probs, targets = evaluation.probs, evaluation.targets
    num_classes = probs.shape[1]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    predictions = probs.argmax(dim=1)
    confusion = confusion_matrix(predictions, targets, num_classes)
    per_class = per_class_report(confusion)
    topk = topk_accuracy(probs, targets, (1, 5))
    calib = calibration(probs, targets, num_bins)
    nll = -probs[torch.arange(targets.numel()), targets].double().clamp(min=1e-12).log().mean().item()
    mistakes = evaluation.mistakes
    return {
        "num_samples": int(targets.numel()),
        "tta": evaluation.tta.mode,
        "tta_views": evaluation.tta.num_views,
        "tta_description": evaluation.tta.describe(),
        "dense": evaluation.dense,
        "top1_accuracy": topk[1],
        "top5_accuracy": topk.get(5),  # None with fewer than 5 classes
        "nll": nll,  # of the averaged posteriors
        "expected_calibration_error": calib.ece,
        "calibration_bins": num_bins,
        "macro_f1": per_class.macro_f1,
        "per_class": {
            name: {"precision": per_class.precision[i], "recall": per_class.recall[i],
                   "f1": per_class.f1[i], "support": per_class.support[i]}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion.tolist(),
        "most_confident_mistakes": [
            {"index": int(i), "true": class_names[int(t)], "predicted": class_names[int(p)], "confidence": float(c)}
            for i, t, p, c in zip(mistakes.indices, mistakes.targets, mistakes.predictions, mistakes.confidence)
        ],
    }


def write_evaluation(
    out_dir: Path,
    evaluation: Evaluation,
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    title: str,
    class_mapping: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Write evaluation.json, the confusion matrix, the mistakes grid and the reliability diagram.

    ``class_mapping`` (dataset class -> the run's class it was scored as, when matched by
    position) is recorded in the JSON. Returns the report and the paths written, by kind.
    """
    out_dir = output_dir(out_dir)
    report = evaluation_report(evaluation, class_names)
    if class_mapping is not None:
        report["classes_mapped_by_position"] = dict(class_mapping)
    paths = {
        "results": out_dir / RESULTS_FILE,
        "confusion": out_dir / CONFUSION_FILE,
        "mistakes": out_dir / MISTAKES_FILE,
        "reliability": out_dir / RELIABILITY_FILE,
    }
    atomic_write_bytes(paths["results"], (json.dumps(report, indent=2) + "\n").encode())
    confusion = torch.tensor(report["confusion_matrix"], dtype=torch.int64)
    plot_confusion_matrix(paths["confusion"], confusion, list(class_names),
                          f"{title}: top-1 {100 * report['top1_accuracy']:.2f}%")
    plot_mistakes(paths["mistakes"], evaluation.mistakes, class_names, mean, std, f"{title}: most confident mistakes")
    ece = report["expected_calibration_error"]
    plot_reliability(paths["reliability"], evaluation, f"{title}: ECE {100 * ece:.2f}%")
    return report, paths


def plot_mistakes(path: Path, mistakes: Mistakes, class_names: Sequence[str], mean: Sequence[float],
                  std: Sequence[float], title: str, max_columns: int = 8) -> Path:
    """A grid of the wrongly classified images: "predicted (confidence) / true" under each."""
    from matplotlib.figure import Figure

    count = mistakes.indices.numel()
    if count == 0:
        figure = Figure(figsize=(5, 2), layout="constrained")
        axes = figure.subplots()
        axes.axis("off")
        axes.text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=14)
        figure.suptitle(title)
        return save_figure(figure, path)
    rows, columns = grid_shape(count, max_columns)
    figure = Figure(figsize=(1.8 * columns, 2.1 * rows + 0.4), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    pixels = denormalize(mistakes.images, mean, std)
    for slot, axes in enumerate(grid.flat):
        if slot >= count:
            axes.axis("off")
            continue
        show_image(axes, pixels[slot])
        predicted = class_names[int(mistakes.predictions[slot])]
        true = class_names[int(mistakes.targets[slot])]
        axes.set_title(f"{predicted} ({100 * float(mistakes.confidence[slot]):.0f}%)\ntrue: {true}", fontsize=7)
    figure.suptitle(title)
    return save_figure(figure, path)


def plot_reliability(path: Path, evaluation: Evaluation, title: str, num_bins: int = 15) -> Path:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    from matplotlib.figure import Figure

    calib = calibration(evaluation.probs, evaluation.targets, num_bins)
    centres = [(lo + hi) / 2 for lo, hi in zip(calib.bin_edges[:-1], calib.bin_edges[1:])]
    filled = [i for i, n in enumerate(calib.bin_count) if n > 0]
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.subplots()
    axes.bar([centres[i] for i in filled], [calib.bin_accuracy[i] for i in filled], width=1 / num_bins,
             edgecolor="black", alpha=0.7, label="accuracy")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    axes.scatter([centres[i] for i in filled], [calib.bin_confidence[i] for i in filled],
                 marker="_", s=200, color="tab:red", zorder=3, label="mean confidence in the bin")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top-1 probability)")
    axes.set_ylabel("accuracy")
    axes.legend(loc="upper left")
    axes.set_title(title)
    return save_figure(figure, path)


def format_report(report: dict[str, Any]) -> str:
    """A few lines for the terminal: headline numbers, then per class."""
    top5 = report["top5_accuracy"]
    lines = [
        f"images: {report['num_samples']:,}; test-time method: {report['tta_description']}"
        f"{', dense (FC layers as convolutions)' if report['dense'] else ''}",
        f"top-1 accuracy: {100 * report['top1_accuracy']:.2f}%",
        f"top-5 accuracy: {'n/a (fewer than 5 classes)' if top5 is None else f'{100 * top5:.2f}%'}",
        f"expected calibration error: {100 * report['expected_calibration_error']:.2f}% "
        f"({report['calibration_bins']} bins); NLL {report['nll']:.4f}",
        f"macro F1: {report['macro_f1']:.4f}",
    ]
    width = max(len(name) for name in report["per_class"])
    lines.append(f"  {'class':<{width}}  precision  recall     F1  support")
    for name, row in report["per_class"].items():
        lines.append(f"  {name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:.4f}"
                     f"  {row['support']:7d}")
    return "\n".join(lines)

