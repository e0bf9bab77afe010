"""``classicnets lr-find``: the range test on the training loop's own set-up, its plot and
suggestion, and no run directory touched."""

from __future__ import annotations

import math

import pytest

from classicnets.cli.main import main
from classicnets.engine import build_config
from classicnets.engine import loop as engine_loop
from classicnets.engine.lr_find import RangeTest, find_lr, lr_schedule

from test_train import synthetic_build_data

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def synthetic_data(monkeypatch):
    monkeypatch.setattr(engine_loop, "build_data", synthetic_build_data)


def test_schedule_grows_exponentially_from_start_to_end():
    lrs = lr_schedule(1e-6, 1.0, 7)
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] == pytest.approx(1.0)
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert ratios == pytest.approx([10.0] * 6)


def test_the_reading_of_a_curve():
    lrs = [10.0 ** k for k in range(-6, 1)]
    result = RangeTest(lrs, [2.3, 2.3, 2.2, 1.6, 1.0, 0.9, 5.0], stopped_early=True)
    assert result.min_loss_lr == pytest.approx(0.1)
    assert result.suggested_lr == pytest.approx(0.01)
    assert result.steepest_lr == pytest.approx(1e-3)  # the fall 2.2 -> 1.0 is centred there


def test_range_test_runs_on_the_trainers_model_and_data(synthetic_data):
    config = build_config(None, {"model": "googlenet", "model_kwargs": {"aux_logits": False}, "image_size": 16,
                                 "batch_size": 32, "device": "cpu"})
    result = find_lr(config, start_lr=1e-5, end_lr=1e3, steps=40, quiet=True)
    assert 5 <= len(result.lrs) <= 40 and all(math.isfinite(v) for v in result.losses)
    assert result.lrs == sorted(result.lrs) and result.lrs[0] == pytest.approx(1e-5)
    assert result.min_loss_lr in result.lrs and result.suggested_lr == pytest.approx(result.min_loss_lr / 10)


def test_cli_writes_the_plot_and_touches_no_run_directory(synthetic_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["lr-find", "--model", "googlenet", "--image-size", "16", "--batch-size", "32", "--device", "cpu",
                 "--steps", "30", "--start-lr", "1e-4", "--end-lr", "100", "--quiet", "--out", "range.png"])
    assert code == 0
    out = capsys.readouterr().out
    assert "suggested lr:" in out and "loss minimum at lr" in out
    assert (tmp_path / "range.png").read_bytes().startswith(PNG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["range.png"]  # no runs/ folder


def test_a_falling_range_is_refused(capsys):
    assert main(["lr-find", "--model", "googlenet", "--start-lr", "1", "--end-lr", "0.1"]) == 2
    assert "the range must rise" in capsys.readouterr().err
