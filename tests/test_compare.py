"""The run comparison: figures computed from the networks, every row present, charts written."""

import json
import math
from pathlib import Path

import pytest
import torch

import classicnets
from classicnets.analysis.compare import (BenchSettings, collect_run_stats, network_costs, report_rows,
                                          unique_labels, write_compare_report)
from classicnets.engine import build_config
from classicnets.engine.checkpoint import save_weights
from classicnets.errors import UserError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROW_NAMES = [
    "model", "dataset", "input", "parameters", "MACs per image", "parameters at 3x224x224, 1000 classes",
    "MACs per image at 3x224x224", "parameter memory (fp32)", "forward activation memory, batch 2",
    "saved for backward, batch 2", "training throughput, recorded by the run", "device the run trained on",
    "training throughput, CPU, batch 2 (measured)", "inference latency, CPU, 1 image (measured)",
    "training throughput, GPU, batch 2 (measured)", "inference latency, GPU, 1 image (measured)",
    "best validation accuracy", "test accuracy", "best epoch / epochs", "training wall time",
]


def write_run(run_dir: Path, model_name: str, summary: dict | None, image_size: int = 32) -> Path:
    """A run directory as ``classicnets train`` leaves it: weights with metadata, config, summary."""
    torch.manual_seed(0)
    classes = ["a", "b", "c"]
    model = classicnets.create_model(model_name, num_classes=len(classes), in_chans=1)
    run_dir.mkdir(parents=True)
    save_weights(run_dir / "best.safetensors", model.state_dict(), {
        "model": model_name, "dataset": "toy", "num_classes": len(classes), "in_chans": 1,
        "image_size": image_size, "mean": [0.5], "std": [0.25], "class_names": classes,
        "model_kwargs": {}, "epoch": 3, "val_accuracy": 0.5})
    build_config(None, {"model": model_name, "dataset": "toy", "image_size": image_size}).save(run_dir / "config.yaml")
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


SUMMARY = {"test_accuracy": 0.9123, "best_val_accuracy": 0.9234, "best_epoch": 7, "epochs": 10,
           "wall_time_s": 3723.4, "train_images_per_s": 1234.5, "device": "cuda (NVIDIA H100)"}


@pytest.fixture(scope="module")
def runs(module_tmp_path) -> list[Path]:
    root = module_tmp_path
    return [write_run(root / "googlenet-run", "googlenet", SUMMARY),
            write_run(root / "paper-run", "googlenet_paper", None)]  # still training: no summary yet


@pytest.fixture(scope="module")
def measured(runs):
    """The first run with CPU timings (one cold step each: only that they are numbers matters)."""
    return collect_run_stats(runs[0], batch_size=2, bench=BenchSettings(steps=1, warmup=0, devices=("cpu",)))


def test_costs_at_the_papers_setting_match_the_published_figures():
    # The comparison a published reproduction made by hand: VGG16 138M parameters and
    # 15.5 G multiply-adds, GoogLeNet (with its auxiliary heads) 13.4M and 1.6 G.
    vgg = network_costs("vgg16", num_classes=10, in_chans=1, image_size=32, batch_size=2)
    assert vgg["paper_params"] == 138_357_544
    assert vgg["paper_macs"] == pytest.approx(15.47e9, rel=1e-3)
    assert vgg["params"] < vgg["paper_params"]  # 10 classes and 1 channel
    googlenet = network_costs("googlenet", num_classes=10, in_chans=1, image_size=32, batch_size=2)
    assert googlenet["paper_params"] == 13_385_816
    assert googlenet["paper_macs"] == pytest.approx(1.59e9, rel=5e-3)
    assert googlenet["param_bytes"] == 4 * googlenet["params"]
    assert googlenet["backward_saved_bytes"] > googlenet["forward_activation_bytes"] > 0


def test_collect_run_stats_reads_the_run_and_measures_speed(runs, measured):
    stats = measured
    assert stats.model == "googlenet" and stats.dataset == "toy" and stats.image_size == 32
    assert stats.params == sum(p.numel() for p in classicnets.create_model("googlenet", 3, 1).parameters())
    assert stats.results["test_accuracy"] == 0.9123
    for value in (stats.latency_ms["cpu"], stats.train_images_per_s["cpu"]):
        assert math.isfinite(value) and value > 0
    # timing trains a copy: the run's weights on disk are what they were
    model, _ = classicnets.engine.load_run(runs[0])
    torch.manual_seed(0)
    original = classicnets.create_model("googlenet", num_classes=3, in_chans=1)
    torch.testing.assert_close(model.fc.weight, original.fc.weight)


def test_report_has_every_row_for_every_run_and_all_charts(runs, measured, tmp_path):
    stats = [measured, collect_run_stats(runs[1], batch_size=2, bench=None)]
    rows = report_rows(stats)
    assert [name for name, _ in rows] == ROW_NAMES
    assert all(len(cells) == 2 for _, cells in rows)
    cells = dict(rows)
    assert cells["test accuracy"] == ["91.23%", "n/a"]
    assert cells["best validation accuracy"] == ["92.34%", "n/a"]
    assert cells["training wall time"] == ["1h 02m 03s", "n/a"]
    assert cells["best epoch / epochs"] == ["7 / 10", "n/a"]
    assert cells["inference latency, CPU, 1 image (measured)"][1] == "not measured"
    assert cells["parameters at 3x224x224, 1000 classes"][0] == "13,385,816"

    paths = write_compare_report(tmp_path / "out" / "report.md", stats)
    text = paths["report"].read_text()
    for name in ROW_NAMES:
        assert f"| {name} |" in text
    assert "| googlenet-run | paper-run |" in text.replace("|  |", "|")
    for kind in ("size", "memory", "speed", "accuracy"):
        chart = paths[kind]
        assert chart.parent == tmp_path / "out" / "report_charts"
        assert chart.read_bytes()[:8] == PNG_SIGNATURE and chart.stat().st_size > 5000
        assert f"(report_charts/{chart.name})" in text


def test_unique_labels_disambiguate_equal_names(tmp_path):
    assert unique_labels([tmp_path / "a" / "run", tmp_path / "b" / "run", tmp_path / "c"]) == ["a/run", "b/run", "c"]


def test_nothing_to_compare_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="at least one run"):
        write_compare_report(tmp_path / "r.md", [])


def test_broken_summary_is_a_user_error(tmp_path):
    run = write_run(tmp_path / "run", "googlenet", None)
    (run / "summary.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        collect_run_stats(run, batch_size=2, bench=None)
