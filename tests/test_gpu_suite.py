"""benchmarks/gpu_suite.py: its dry run end to end on real Fashion-MNIST, its budgets and errors."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SUITE = BENCHMARKS / "gpu_suite.py"
RUN_TIMEOUT_S = 600  # a guard against a hang; the dry run takes well under a minute on two idle cores

# (measurement, model) of every line a dry run prints, in order; googlenet stands in for vgg16.
DRY_RUN_LINES = [
    ("throughput_eager", "googlenet"), ("throughput_eager", "googlenet"),
    ("throughput_compiled_vgg16", "googlenet"), ("throughput_compiled_googlenet", "googlenet"),
    ("time_to_accuracy", "googlenet"),
    ("ddp_overhead", "googlenet"), ("ddp_overhead", "googlenet"), ("ddp_overhead", "googlenet"),
    ("ddp_overhead", "googlenet"),
    ("accuracy_short", "googlenet"),
]
STANDS_IN_FOR_VGG16 = [True, False, True, False, True, True, True, False, False, False]
KEYS = ("model", "metric", "value", "device", "torch_version", "date", "command", "measurement", "dry_run",
        "budget_s", "step_wall_s", "suite_command")


def run_suite(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(SUITE), *args], capture_output=True, text=True,
                            timeout=RUN_TIMEOUT_S)
    return result, time.perf_counter() - start


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture
def suite(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("gpu_suite")


def test_dry_run_writes_one_json_line_per_measurement_and_a_table(fashion_mnist_dir, tmp_path):
    out = tmp_path / "suite"
    result, seconds = run_suite("--dry-run", "--data-dir", str(fashion_mnist_dir), "--out", str(out))
    print(f"dry run: {seconds:.1f} s\n{result.stderr}")
    assert result.returncode == 0, result.stderr

    records = json_lines(result.stdout)
    assert records == [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["measurement"], r["model"]) for r in records] == DRY_RUN_LINES
    assert [r.get("stands_in_for") == "vgg16" for r in records] == STANDS_IN_FOR_VGG16
    for record in records:
        assert all(key in record for key in KEYS), record
        assert record["dry_run"] is True and "error" not in record, record
        assert isinstance(record["value"], (int, float)) and math.isfinite(record["value"]), record
        assert record["value"] > 0 or record["metric"] == "test_accuracy", record
        assert math.isfinite(record["budget_s"]) and 0 < record["step_wall_s"] <= record["budget_s"] + 30
        assert "--dry-run" in record["suite_command"]
    assert {r["metric"] for r in records} == {"train_images_per_s", "seconds_to_test_result", "test_accuracy"}
    assert [r["mode"] for r in records if r["measurement"] == "ddp_overhead"] == ["plain", "ddp", "plain", "ddp"]
    assert [r.get("compile") for r in records if r["measurement"].startswith("throughput")] == [
        False, False, True, True]
    assert 0 <= records[-1]["value"] <= 1 and records[-1]["seed"] == 0

    table = (out / "summary.md").read_text()
    assert table.startswith("# GPU suite: DRY RUN")
    rows = [line for line in table.splitlines()
            if line.startswith("| ") and not line.startswith(("| measurement", "| ---"))]
    assert len(rows) == len(records)
    assert all(row.endswith("| yes |") and "error" not in row for row in rows)
    # Training runs leave their summaries beside the logs, and no checkpoints behind.
    assert (out / "logs" / "time_to_accuracy" / "summary.json").is_file()
    assert (out / "logs" / "accuracy_short" / "seed0" / "summary.json").is_file()
    assert not list(out.rglob("*.ckpt")) and not list(out.rglob("*.safetensors"))


def test_a_measurement_over_its_budget_becomes_an_error_line_and_the_suite_goes_on(fashion_mnist_dir, tmp_path):
    out = tmp_path / "suite"
    result, _ = run_suite("--dry-run", "--data-dir", str(fashion_mnist_dir), "--out", str(out),
                          "--only", "throughput_eager", "ddp_overhead",
                          "--budget", "throughput_eager=0.5", "--budget", "ddp_overhead=0.5")
    assert result.returncode == 1, result.stderr
    records = json_lines(result.stdout)
    assert [r["measurement"] for r in records] == ["throughput_eager"] * 2 + ["ddp_overhead"] * 4
    for record in records:
        assert record["value"] is None and record["error"] == "stopped at its time budget of 0.5 s", record
        assert record["dry_run"] is True and record["budget_s"] == 0.5
        assert all(key in record for key in KEYS)
    table = (out / "summary.md").read_text()
    assert table.count("error: stopped at its time budget") == len(records)


def test_without_a_gpu_only_a_dry_run_or_an_explicit_cpu_run_starts(suite, fashion_mnist_dir, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exit_info:
        suite.main(["--data-dir", str(fashion_mnist_dir)])
    assert exit_info.value.code == 2
    assert "--dry-run" in capsys.readouterr().err
    assert suite.main(["--device", "cpu", "--data-dir", str(fashion_mnist_dir), "--list"]) == 0
    listing = capsys.readouterr().out
    assert "throughput_compiled_vgg16" in listing and "--compile-mode default" in listing


def test_bad_budgets_and_names_are_refused(suite, capsys):
    for argv in (["--budget", "nope=3"], ["--budget", "ddp_overhead=-1"], ["--only", "nope"]):
        with pytest.raises(SystemExit) as exit_info:
            suite.main(["--dry-run", "--list", *argv])
        assert exit_info.value.code == 2
        assert "Traceback" not in capsys.readouterr().err


def test_ddp_overhead_keeps_its_nproc_from_torchrun(monkeypatch):
    # torchrun reads a --nproc after the script as its own (ambiguous) --nproc-per-node.
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    ddp_overhead = importlib.import_module("ddp_overhead")
    assert ddp_overhead.without_nproc(["--nproc", "2", "--steps", "3", "--nproc=4", "--models", "vgg16"]) == [
        "--steps", "3", "--models", "vgg16"]
