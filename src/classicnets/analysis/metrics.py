"""Classification metrics from predicted probabilities and true labels.

All functions take ``probs`` ``[N, classes]`` (rows summing to one, or any scores for
the ranking-only metrics) and ``targets`` ``[N]`` (int64) and return plain Python
numbers or CPU tensors. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UserError


def check_finite_outputs(values: torch.Tensor, weights: str | None, on: str) -> None:
    """Refuse a network's outputs holding NaN or inf: every score made from them would be
    meaningless ("cat nan%"), and the usual cause is a run that diverged."""
    if bool(torch.isfinite(values).all()):
        return
    kind = "NaN" if bool(torch.isnan(values).any()) else "inf"
    source = f"the weights in {weights}" if weights else "the network"
    raise UserError(f"{source} produce non-finite outputs ({kind}) on {on}; the run may have diverged.")


def topk_accuracy(scores: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Fraction of samples whose true class is among the ``k`` highest scores, per ``k``.

    A ``k`` larger than the number of classes is left out (every sample would count).
    Ties are broken by ``torch.topk``, which keeps the first of equal scores.
    """
    num_classes = scores.shape[1]
    usable = [k for k in ks if k <= num_classes]
    if not usable or targets.numel() == 0:
        return {}
    top = scores.topk(max(usable), dim=1).indices  # [N, kmax], best first
    hits = top == targets[:, None]
    return {k: hits[:, :k].any(dim=1).double().mean().item() for k in usable}


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 ``[true class, predicted class]`` counts."""
    flat = targets.to(torch.int64) * num_classes + predictions.to(torch.int64)
    return torch.bincount(flat.cpu(), minlength=num_classes * num_classes).view(num_classes, num_classes)


@dataclass(frozen=True)
class ClassReport:
    precision: list[float]  # of the samples predicted as the class, the fraction that are
    recall: list[float]  # of the samples of the class, the fraction predicted as it
    f1: list[float]  # harmonic mean of the two; 0 where both are 0
    support: list[int]  # true samples per class

    @property
    def macro_f1(self) -> float:
        return sum(self.f1) / len(self.f1) if self.f1 else 0.0


def per_class_report(confusion: torch.Tensor) -> ClassReport:
    """Precision, recall and F1 per class from a confusion matrix (rows: true class).

    A class never predicted has precision 0 (no correct prediction of it), a class with
    no samples has recall 0, as scikit-learn does with ``zero_division=0``.
    """
    counts = confusion.to(torch.float64)
    correct = counts.diag()
    predicted = counts.sum(dim=0)
    actual = counts.sum(dim=1)
    precision = torch.where(predicted > 0, correct / predicted.clamp(min=1), torch.zeros_like(correct))
    recall = torch.where(actual > 0, correct / actual.clamp(min=1), torch.zeros_like(correct))
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both.clamp(min=1e-300), torch.zeros_like(both))
    return ClassReport(precision.tolist(), recall.tolist(), f1.tolist(), actual.to(torch.int64).tolist())


@dataclass(frozen=True)
class Calibration:
    ece: float  # expected calibration error, a fraction in [0, 1]
    bin_edges: list[float]  # num_bins + 1 confidence edges
    bin_confidence: list[float]  # mean top-1 probability per bin (0 for an empty bin)
    bin_accuracy: list[float]  # accuracy per bin (0 for an empty bin)
    bin_count: list[int]


def calibration(probs: torch.Tensor, targets: torch.Tensor, num_bins: int = 15) -> Calibration:
    """Expected calibration error over equal-width confidence bins (Guo et al., 2017).

    ECE = sum over bins of (samples in bin / N) * |accuracy(bin) - mean confidence(bin)|,
    with confidence the top-1 probability. Bins are (lo, hi], the first one [0, hi].
    """
    if num_bins < 1:
        raise ValueError(f"num_bins must be at least 1, got {num_bins}")
    confidence, predictions = probs.double().max(dim=1)
    correct = (predictions == targets).double()
    edges = torch.linspace(0, 1, num_bins + 1, dtype=torch.float64, device=probs.device)
    # bucketize with right=False gives i such that edges[i-1] < c <= edges[i]
    bins = (torch.bucketize(confidence, edges, right=False) - 1).clamp(min=0, max=num_bins - 1)
    count = torch.bincount(bins, minlength=num_bins).double()
    conf_sum = torch.bincount(bins, weights=confidence, minlength=num_bins)
    acc_sum = torch.bincount(bins, weights=correct, minlength=num_bins)
    safe = count.clamp(min=1)
    total = max(int(targets.numel()), 1)
    ece = ((acc_sum - conf_sum).abs().sum() / total).item()  # |acc - conf| * count / N, per bin
    return Calibration(ece, edges.tolist(), (conf_sum / safe).tolist(), (acc_sum / safe).tolist(),
                       count.to(torch.int64).tolist())


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, num_bins: int = 15) -> float:
    return calibration(probs, targets, num_bins).ece


def most_confident_mistakes(probs: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of up to ``k`` misclassified samples, highest top-1 probability first."""
    confidence, predictions = probs.max(dim=1)
    wrong = (predictions != targets).nonzero().flatten()
    order = confidence[wrong].argsort(descending=True, stable=True)
    return wrong[order[:k]]
