"""Metrics against direct computations and hand-worked examples."""

import math

import numpy as np
import pytest
import torch

from classicnets.analysis.metrics import (calibration, confusion_matrix, expected_calibration_error,
                                          most_confident_mistakes, per_class_report, topk_accuracy)


def test_topk_against_a_direct_computation():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(500, 12, generator=generator)
    targets = torch.randint(0, 12, (500,), generator=generator)
    result = topk_accuracy(scores, targets, (1, 3, 5))
    for k in (1, 3, 5):
        # the true class is in the top k iff fewer than k classes score higher
        higher = (scores > scores[torch.arange(500), targets][:, None]).sum(dim=1)
        assert result[k] == pytest.approx((higher < k).double().mean().item(), abs=1e-12)
    assert result[1] <= result[3] <= result[5]


def test_topk_hand_example_and_too_large_k():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    targets = torch.tensor([1, 2, 1])  # right, last, second
    assert topk_accuracy(scores, targets, (1, 2, 5)) == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    predictions = torch.tensor([0, 1, 1, 2, 2, 2])
    targets = torch.tensor([0, 1, 2, 2, 2, 0])
    expected = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 1, 2]])
    assert torch.equal(confusion_matrix(predictions, targets, 3), expected)


def test_per_class_report_hand_example():
    confusion = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 1, 2]])
    report = per_class_report(confusion)
    assert report.precision == pytest.approx([1.0, 0.5, 2 / 3])
    assert report.recall == pytest.approx([0.5, 1.0, 2 / 3])
    assert report.f1 == pytest.approx([2 / 3, 2 / 3, 2 / 3])
    assert report.support == [2, 1, 3]
    assert report.macro_f1 == pytest.approx(2 / 3)


def test_per_class_report_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(1)
    targets = torch.randint(0, 6, (300,), generator=generator)
    predictions = torch.where(torch.rand(300, generator=generator) < 0.6, targets,
                              torch.randint(0, 6, (300,), generator=generator))
    predictions[predictions == 5] = 4  # class 5 is never predicted: precision 0 by convention
    report = per_class_report(confusion_matrix(predictions, targets, 6))
    p, r, f, s = metrics.precision_recall_fscore_support(targets.numpy(), predictions.numpy(),
                                                         labels=list(range(6)), zero_division=0)
    np.testing.assert_allclose(report.precision, p)
    np.testing.assert_allclose(report.recall, r)
    np.testing.assert_allclose(report.f1, f)
    assert report.support == s.tolist()


def test_ece_hand_example():
    # Two bins. Bin (0.5, 1]: confidences 0.9, 0.8 (one right, one wrong), accuracy 0.5,
    # mean confidence 0.85. Bin [0, 0.5]: confidence 0.4 (right), accuracy 1, gap 0.6.
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.4, 0.3, 0.3]])
    targets = torch.tensor([0, 0, 0])
    result = calibration(probs, targets, num_bins=2)
    assert result.bin_count == [1, 2]
    assert result.bin_accuracy == pytest.approx([1.0, 0.5])
    assert result.bin_confidence == pytest.approx([0.4, 0.85])
    assert result.ece == pytest.approx((1 * 0.6 + 2 * 0.35) / 3)


def test_ece_against_a_loop_over_bins():
    generator = torch.Generator().manual_seed(2)
    probs = torch.softmax(3 * torch.randn(400, 5, generator=generator), dim=1)
    targets = torch.randint(0, 5, (400,), generator=generator)
    confidence, predictions = probs.max(dim=1)
    ece = 0.0
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        members = (confidence > lo) & (confidence <= hi) if b else (confidence <= hi)
        if members.any():
            gap = (predictions[members] == targets[members]).double().mean() - confidence[members].double().mean()
            ece += members.sum().item() / 400 * abs(gap.item())
    assert expected_calibration_error(probs, targets) == pytest.approx(ece, abs=1e-9)


def test_perfectly_confident_and_right_has_zero_ece():
    targets = torch.tensor([0, 1, 2, 1])
    probs = torch.nn.functional.one_hot(targets, 3).float()
    assert expected_calibration_error(probs, targets) == 0.0


def test_most_confident_mistakes_come_first():
    probs = torch.tensor([[0.6, 0.4], [0.2, 0.8], [0.95, 0.05], [0.3, 0.7], [0.55, 0.45]])
    targets = torch.tensor([0, 0, 1, 1, 1])  # wrong: 1 (0.8), 2 (0.95), 4 (0.55)
    assert most_confident_mistakes(probs, targets, 2).tolist() == [2, 1]
    assert most_confident_mistakes(probs, targets, 10).tolist() == [2, 1, 4]
    assert math.isclose(float(probs[2].max()), 0.95, rel_tol=1e-6)
