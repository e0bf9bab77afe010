"""Data-parallel training through torchrun on the CPU (Gloo), 2 processes.

torchrun's workers are fresh processes, so nothing can be monkeypatched into them: the
runs read a tiny Fashion-MNIST written as real IDX files in a temporary directory. The
model (googlenet_paper without auxiliary heads, dropout 0: no batch norm, no randomness
after initialisation) and the data order make a 2-rank run and a single-process run with
the same global batch compute the same updates, so their weights must agree.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from classicnets.cli.main import main
from classicnets.engine.checkpoint import load_checkpoint

N_TRAIN, N_TEST, CLASSES = 200, 60, 10
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
RUN_TIMEOUT_S = 240  # a hang fails the test instead of blocking the suite
EXPECTED_FILES = {"config.yaml", "metrics.csv", "best.safetensors", "last.ckpt", "curves.png",
                  "confusion_matrix.png", "summary.json"}


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: two zero bytes, type 0x08 (unsigned byte), number of dims, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def class_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images: a fixed random template per class plus noise; balanced labels."""
    templates = np.random.default_rng(7).integers(0, 256, (CLASSES, 28, 28))
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % CLASSES
    rng.shuffle(labels)
    images = np.clip(templates[labels] + rng.integers(-50, 51, (count, 28, 28)), 0, 255)
    return images, labels


@pytest.fixture(scope="module")
def data_root(module_tmp_path) -> Path:
    root = module_tmp_path / "ddp-data"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count, seed in (("train", N_TRAIN, 1), ("t10k", N_TEST, 2)):
        images, labels = class_images(count, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="module")
def recipe(module_tmp_path) -> Path:
    """No augmentation, no dropout, no batch norm, float32 on the CPU: the runs are comparable."""
    path = module_tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "model": "googlenet_paper", "model_kwargs": {"aux_logits": False, "dropout": 0.0},
        "augment": {"crop_padding": 0, "hflip": False, "erasing": 0.0},
        "image_size": 16, "val_size": 40, "subset": 96, "epochs": 2, "lr": 0.02, "optimizer": "sgd",
        "weight_decay": 5e-4, "scheduler": "cosine", "device": "cpu", "seed": 5, "loader": "device",
        "eval_batch_size": 16,
    }))
    return path


def environment() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def classicnets(*args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "classicnets", *args], capture_output=True, text=True,
                          env=environment(), timeout=timeout)


def torchrun(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, env=environment(),
                          timeout=RUN_TIMEOUT_S)


def train_args(data_root: Path, recipe: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--recipe", str(recipe), "--data-dir", str(data_root), "--out", str(out), "--quiet", *extra]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "last.ckpt")["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=2e-5, msg=f"{name} differs")


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_ranks_match_one_process_with_the_same_global_batch(data_root, recipe, tmp_path):
    single = tmp_path / "single"
    result = classicnets(*train_args(data_root, recipe, single, "--batch-size", "16"))
    assert result.returncode == 0, result.stderr

    # 2 ranks x batch 4 x 2 accumulated micro-batches = global batch 16, through the --nproc launcher
    ddp = tmp_path / "ddp"
    result = classicnets(*train_args(data_root, recipe, ddp, "--batch-size", "4", "--grad-accum-steps", "2",
                                     "--nproc", "2"))
    assert result.returncode == 0, result.stderr

    assert_same_weights(final_weights(single), final_weights(ddp))
    assert_same_weights(load_file(single / "best.safetensors"), load_file(ddp / "best.safetensors"))
    assert {p.name for p in ddp.iterdir()} == EXPECTED_FILES  # one set of outputs, no per-rank files
    summary = json.loads((ddp / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 16
    assert summary["test_images"] == N_TEST  # summed over both ranks' shards
    single_rows, ddp_rows = read_metrics(single), read_metrics(ddp)
    assert len(ddp_rows) == 2
    for one, two in zip(single_rows, ddp_rows):
        for column in ("val_acc", "val_loss", "train_loss", "train_acc"):
            assert float(one[column]) == pytest.approx(float(two[column]), rel=1e-4, abs=1e-6)
    assert result.stdout.count("; results in ") == 1  # rank 0 alone reports


def test_ranks_share_the_default_run_directory_chosen_by_rank_0(data_root, recipe, tmp_path):
    # No --out: rank 0 names and creates runs/<model>-<dataset>-<time> and tells the others,
    # so a rank that starts a second later cannot pick a directory of its own.
    args = ["train", "--recipe", str(recipe), "--data-dir", str(data_root), "--quiet", "--epochs", "1"]
    result = subprocess.run([*TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "classicnets", *args],
                            capture_output=True, text=True, env=environment(), timeout=RUN_TIMEOUT_S, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1 and {p.name for p in run_dirs[0].iterdir()} == EXPECTED_FILES


def test_gradient_accumulation_matches_the_large_batch_in_one_process(data_root, recipe, tmp_path):
    runs = {}
    for name, flags in (("large", ["--batch-size", "16"]), ("accumulated", ["--batch-size", "8",
                                                                             "--grad-accum-steps", "2"])):
        runs[name] = tmp_path / name
        result = classicnets(*train_args(data_root, recipe, runs[name], "--epochs", "1", *flags))
        assert result.returncode == 0, result.stderr
    assert_same_weights(final_weights(runs["large"]), final_weights(runs["accumulated"]))


def test_resume_under_ddp_continues_to_the_uninterrupted_result(data_root, recipe, tmp_path):
    # a constant lr ("step" every 30 epochs), so stopping after epoch 1 plans the same schedule
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = ["--standalone", "--nproc_per_node", "2", "-m", "classicnets"]
    flags = ["--batch-size", "8", "--scheduler", "step"]
    result = torchrun(*common, *train_args(data_root, recipe, straight, *flags))
    assert result.returncode == 0, result.stderr
    result = torchrun(*common, *train_args(data_root, recipe, resumed, *flags, "--epochs", "1"))
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(resumed / "last.ckpt")["progress"]["epoch"] == 1
    result = torchrun(*common, "train", "--resume", str(resumed), "--epochs", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(resumed / "last.ckpt")["progress"]["epoch"] == 2
    assert_same_weights(final_weights(straight), final_weights(resumed))
    assert [row["epoch"] for row in read_metrics(resumed)] == ["1", "2"]


def test_two_nodes_on_loopback_rendezvous_and_train(data_root, recipe, tmp_path):
    out = tmp_path / "two-nodes"
    port = free_port()
    nodes = [subprocess.Popen(
        [*TORCHRUN, "--nnodes", "2", "--nproc_per_node", "1", "--node-rank", str(node),
         "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "classicnets-test",
         "-m", "classicnets", *train_args(data_root, recipe, out, "--batch-size", "8", "--epochs", "1")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment()) for node in (0, 1)]
    try:
        outputs = [node.communicate(timeout=RUN_TIMEOUT_S) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["test_images"] == N_TEST
    assert sum(stdout.count("; results in ") for stdout, _ in outputs) == 1


def test_a_failing_rank_stops_the_job_and_is_named(data_root, recipe, tmp_path):
    # A worker that breaks the data layer on rank 1 only; rank 0 is left waiting in a collective.
    worker = tmp_path / "failing_worker.py"
    worker.write_text(textwrap.dedent("""\
        import os
        import sys

        from classicnets.cli.main import main
        from classicnets.engine import loop

        def broken_build_data(*args, **kwargs):
            raise RuntimeError("injected failure for the test")

        if os.environ["RANK"] == "1":
            loop.build_data = broken_build_data
        sys.exit(main(sys.argv[1:]))
        """))
    start = time.monotonic()
    result = torchrun("--standalone", "--nproc_per_node", "2", str(worker),
                      *train_args(data_root, recipe, tmp_path / "failed", "--batch-size", "8",
                                  "--dist-timeout", "1"))
    assert result.returncode != 0
    assert time.monotonic() - start < RUN_TIMEOUT_S  # bounded: it did not hang until the timeout
    assert "rank 1 failed with RuntimeError: injected failure for the test" in result.stderr


def test_a_loss_that_diverges_on_one_rank_stops_every_rank_with_the_divergence_message(data_root, recipe,
                                                                                       tmp_path):
    # Rank 1 alone sees a NaN loss value (its gradients stay finite, so rank 0's loss stays
    # finite). If rank 1 stopped alone, rank 0 would be killed mid-step (or, across nodes,
    # wait in its next collective until the timeout) and never name the cause. Every rank
    # stops at the same step, and rank 0 says why before any rank exits. (torchrun may
    # still SIGTERM a rank that is slower to exit than the first: that is its own race.)
    worker = tmp_path / "nan_worker.py"
    worker.write_text(textwrap.dedent("""\
        import os
        import sys

        from classicnets.cli.main import main
        from classicnets.engine import loop

        real_training_loss = loop.training_loss

        def nan_valued_loss(*args, **kwargs):
            loss, logits = real_training_loss(*args, **kwargs)
            return loss + float("nan") * loss.detach(), logits

        if os.environ["RANK"] == "1":
            loop.training_loss = nan_valued_loss
        sys.exit(main(sys.argv[1:]))
        """))
    out = tmp_path / "diverged"
    result = torchrun("--standalone", "--nproc_per_node", "2", str(worker),
                      *train_args(data_root, recipe, out, "--batch-size", "8", "--dist-timeout", "1"))
    assert result.returncode != 0
    assert result.stderr.count("training diverged: the loss became non-finite on rank 1 in epoch 1") == 1
    assert "failed with" not in result.stderr  # no rank reported a crash
    assert not out.exists()  # stopped before its first epoch: nothing left behind


def test_nproc_inside_a_torchrun_job_is_refused(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--model", "googlenet", "--nproc", "2", "--out", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert "--nproc launches torchrun itself" in error and "Traceback" not in error
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("flag", ["--grad-accum-steps", "--nproc", "--dist-timeout"])
def test_distributed_flags_reject_non_positive_numbers(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "googlenet", flag, "0"])
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_without_option_drops_the_flag_and_its_value():
    from classicnets.cli.train import without_option

    assert without_option(["train", "--nproc", "2", "--lr", "0.1"], "--nproc") == ["train", "--lr", "0.1"]
    assert without_option(["train", "--nproc=4", "--quiet"], "--nproc") == ["train", "--quiet"]


def test_ddp_overhead_benchmark_prints_a_plain_and_a_ddp_line():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ddp_overhead.py"
    result = subprocess.run([sys.executable, str(script), "--device", "cpu", "--models", "googlenet",
                             "--image-size", "32", "--batch-size", "4", "--steps", "2", "--warmup", "1"],
                            capture_output=True, text=True, env=environment(), timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(r["mode"], r["world_size"]) for r in records] == [("plain", 1), ("ddp", 1)]
    assert all(r["metric"] == "train_images_per_s" and r["value"] > 0 for r in records)


def test_sync_bn_on_the_cpu_is_refused_on_every_rank(data_root, recipe, tmp_path):
    out = tmp_path / "sync-bn"
    result = torchrun("--standalone", "--nproc_per_node", "2", "-m", "classicnets",
                      *train_args(data_root, recipe, out, "--batch-size", "8", "--sync-bn"))
    assert result.returncode != 0
    assert "classicnets train: error: rank 0: sync_bn needs CUDA" in result.stderr
    assert not out.exists()


def test_nproc_checks_the_settings_before_launching(capsys, tmp_path):
    assert main(["train", "--model", "nope", "--nproc", "2", "--device", "cpu", "--out", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert "unknown model 'nope'" in error and "Traceback" not in error
    assert not (tmp_path / "x").exists()
    if not torch.cuda.is_available():  # a CUDA recipe on this machine: one sentence, not one per rank
        assert main(["train", "--model", "vgg11", "--nproc", "2", "--device", "cuda", "--out", str(tmp_path / "x")]) == 2
        error = capsys.readouterr().err
        assert error.count("no CUDA GPU is available") == 1 and "rank" not in error


def test_nproc_from_python_launches_the_arguments_it_was_given(data_root, recipe, tmp_path, monkeypatch):
    # main(argv) called from Python: the ranks must get argv, not the host process's sys.argv.
    monkeypatch.setattr(sys, "argv", ["host-program", "--something-else"])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "run"
    assert main([*train_args(data_root, recipe, out, "--epochs", "1"), "--nproc", "1"]) == 0
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES
