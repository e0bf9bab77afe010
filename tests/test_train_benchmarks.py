"""The benchmark scripts run end to end on the CPU with tiny settings."""

from __future__ import annotations

import importlib
import json
import statistics
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_throughput_prints_one_json_line_per_model(fashion_mnist_dir, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    throughput = importlib.import_module("throughput")
    assert throughput.main(["--device", "cpu", "--models", "googlenet", "--steps", "2", "--warmup", "1",
                            "--image-size", "16", "--batch-size", "4", "--data-dir", str(fashion_mnist_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["model"] == "googlenet" and record["metric"] == "train_images_per_s"
    assert record["value"] > 0 and record["batch_size"] == 4 and record["image_size"] == 16
    for key in ("device", "torch_version", "date", "command"):
        assert record[key]


def test_passthrough_args_split_at_double_dash(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    benchlib = importlib.import_module("benchlib")
    assert benchlib.passthrough_args(["--seeds", "1", "--", "--epochs", "2"]) == (["--seeds", "1"], ["--epochs", "2"])
    assert benchlib.passthrough_args(["--seeds", "1"]) == (["--seeds", "1"], [])


def test_cpu_bf16_measures_each_model_in_float32_bf16_and_auto(monkeypatch, capsys):
    from classicnets import device

    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    cpu_bf16 = importlib.import_module("cpu_bf16")
    assert cpu_bf16.parse_model("vgg11_bn:head_window=1,dropout=0.3") == ("vgg11_bn", {"head_window": 1, "dropout": 0.3})
    assert cpu_bf16.main(["--models", "resnet20", "lenet5", "--steps", "2", "--warmup", "1",
                          "--batch-size", "4", "--image-size", "16"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [(r["model"], r["cpu_bf16"]) for r in records] == [
        ("resnet20", False), ("resnet20", True), ("resnet20", "auto"), ("lenet5", False), ("lenet5", True),
        ("lenet5", "auto")]
    # auto runs in whichever precision the CPU's answer gives: faked here as a laptop's
    assert [r["bf16"] for r in records] == [False, True, False] * 2
    assert records[2]["precision"].startswith("float32 (cpu_bf16 auto: this CPU has no native bf16")
    assert all(r["value"] > 0 and r["batch_size"] == 4 and r["image_size"] == 16 for r in records)


def test_plain_loop_alternates_the_two_sides_and_reports_the_speedup(fashion_mnist_dir, monkeypatch, capfd):
    # capfd: `classicnets train` writes to the stderr file descriptor, which capsys has not got
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    plain_loop = importlib.import_module("plain_loop")
    assert plain_loop.main(["--models", "lenet5", "--steps", "2", "--warmup", "1", "--subset", "256",
                            "--rounds", "2", "--data-dir", str(fashion_mnist_dir)]) == 0
    records = [json.loads(line) for line in capfd.readouterr().out.strip().splitlines()]
    measurements, (speedup,) = records[:-1], records[-1:]
    assert [(r["side"], r["round"]) for r in measurements] == [
        ("plain_loop", 1), ("classicnets", 1), ("plain_loop", 2), ("classicnets", 2)]
    assert all(r["model"] == "lenet5" and r["metric"] == "train_images_per_s" and r["value"] > 0
               and r["device"].startswith("cpu (") for r in measurements)
    means = {side: statistics.fmean(r["value"] for r in measurements if r["side"] == side)
             for side in ("plain_loop", "classicnets")}
    assert speedup["model"] == "lenet5" and speedup["metric"] == "speedup_vs_plain_loop"
    assert speedup["value"] == round(means["classicnets"] / means["plain_loop"], 2)
    assert speedup["plain_loop_mean"] == round(means["plain_loop"], 1)
    assert speedup["classicnets_mean"] == round(means["classicnets"], 1)
