"""Nothing lost, nothing trusted blindly: a run directory survives failed
resumes, refused starts, a second process and SIGTERM; divergence shows in the validation
loss too; files the tool reads are checked like flags.

The runs use test_train.py's synthetic data (4 classes of 12x12 images), so each takes
seconds; the lock and SIGTERM tests use real second processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from classicnets.cli.main import main
from classicnets.engine import EvalResult, load_run, train
from classicnets.engine import loop as engine_loop
from classicnets.engine.checkpoint import load_checkpoint, save_weights
from classicnets.engine.rundir import LOCK_FILE
from classicnets.errors import UserError

from test_train import FAST, fast_config, metric_rows, synthetic_build_data

TRAIN_TESTS = Path(__file__).with_name("test_train.py")


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def synthetic_data(monkeypatch):
    monkeypatch.setattr(engine_loop, "build_data", synthetic_build_data)


@pytest.fixture
def finished_run(synthetic_data, tmp_path) -> Path:
    out = tmp_path / "run"
    train(fast_config(out, epochs=1), quiet=True)
    assert (out / "summary.json").is_file() and (out / "confusion_matrix.png").is_file()
    return out


# ----------------------------------------------------------------------------- data loss


def test_failed_resume_keeps_every_result(finished_run, monkeypatch, capsys):
    before = file_hashes(finished_run)

    def data_missing(*args, **kwargs):
        raise UserError("Fashion-MNIST is not in /nowhere")  # e.g. a wrong --data-dir

    monkeypatch.setattr(engine_loop, "build_data", data_missing)
    assert main(["train", "--resume", str(finished_run), "--epochs", "3", "--data-dir", "/nowhere"]) == 2
    assert "/nowhere" in capsys.readouterr().err
    assert file_hashes(finished_run) == before  # summary.json and confusion_matrix.png included


def test_resume_of_a_checkpoint_from_another_model_is_refused_and_changes_nothing(finished_run, capsys):
    state = load_checkpoint(finished_run / "last.ckpt")
    state["model_name"] = "vgg11"
    torch.save(state, finished_run / "last.ckpt")
    before = file_hashes(finished_run)
    assert main(["train", "--resume", str(finished_run), "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "holds a vgg11" in err and "Traceback" not in err
    assert file_hashes(finished_run) == before


def test_resumed_run_replaces_its_old_test_result_once_it_moves_on(finished_run, monkeypatch):
    real_loss, calls = engine_loop.training_loss, []

    def interrupt_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # 4 steps per epoch: epoch 2 committed, epoch 3 started
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(engine_loop, "training_loss", interrupt_in_epoch_3)
    assert main(["train", "--resume", str(finished_run), "--epochs", "3", "--quiet"]) == 130
    # epoch 2 is committed: the 1-epoch test result no longer describes the run
    assert not (finished_run / "summary.json").exists() and not (finished_run / "confusion_matrix.png").exists()
    monkeypatch.setattr(engine_loop, "training_loss", real_loss)
    assert main(["train", "--resume", str(finished_run), "--quiet"]) == 0
    assert json.loads((finished_run / "summary.json").read_text())["epochs"] == 3


def test_refused_start_leaves_a_live_first_epoch_run_untouched(synthetic_data, tmp_path, capsys):
    live = tmp_path / "live"  # a run in its first epoch: config.yaml and nothing else yet
    live.mkdir()
    fast_config(live).save(live / "config.yaml")
    before = file_hashes(live)
    assert main(["train", *FAST, "--out", str(live)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert file_hashes(live) == before


# ----------------------------------------------------------------------------- one process per run


def slow_training_script(out: Path, *flags: str) -> str:
    """``classicnets train`` in a child process on synthetic data, 0.3 s per step."""
    return textwrap.dedent(f"""
        import importlib.util, sys, time
        spec = importlib.util.spec_from_file_location("train_tests", {str(TRAIN_TESTS)!r})
        tests = importlib.util.module_from_spec(spec); spec.loader.exec_module(tests)
        from classicnets.cli.main import main
        from classicnets.engine import loop
        loop.build_data = tests.synthetic_build_data
        real_loss = loop.training_loss
        def slow_loss(*args, **kwargs):
            time.sleep(0.3)
            return real_loss(*args, **kwargs)
        loop.training_loss = slow_loss
        sys.exit(main(["train", *tests.FAST, "--out", {str(out)!r}, *{list(flags)!r}]))
    """)


def start_child(script: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def wait_for(condition, child: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if child.poll() is not None:
            raise AssertionError(f"the child ended early: {child.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError("timed out waiting for the child")
        time.sleep(0.1)


def test_second_process_on_a_training_run_is_refused_naming_the_pid(synthetic_data, tmp_path, capsys):
    out = tmp_path / "run"
    child = start_child(slow_training_script(out, "--epochs", "3"))
    try:
        wait_for(lambda: (out / "last.ckpt").is_file(), child)  # epoch 1 committed, epoch 2 under way
        before = file_hashes(out)
        for attempt in (["--resume", str(out)], [*FAST, "--out", str(out), "--overwrite"]):
            assert main(["train", *attempt]) == 2
            err = capsys.readouterr().err
            assert f"in use by another training process (pid {child.pid})" in err, err
        after = file_hashes(out)
        assert after["config.yaml"] == before["config.yaml"] and "last.ckpt" in after
    finally:
        child.kill()
        child.communicate()
    # the killed owner's lock is stale: the kernel dropped it, so the run resumes
    assert (out / LOCK_FILE).exists()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert not (out / LOCK_FILE).exists()
    assert [int(r["epoch"]) for r in metric_rows(out)] == [1, 2, 3]


def test_lock_is_released_after_a_run_and_a_refusal(finished_run, capsys):
    assert not (finished_run / LOCK_FILE).exists()
    assert main(["train", *FAST, "--out", str(finished_run)]) == 2  # refused: already exists
    assert not (finished_run / LOCK_FILE).exists()


# ----------------------------------------------------------------------------- signals


def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(synthetic_data, tmp_path):
    out = tmp_path / "run"
    child = start_child(slow_training_script(out, "--epochs", "3"))
    try:
        wait_for(lambda: (out / "last.ckpt").is_file(), child)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 143, err[-2000:]
    assert f"terminated (SIGTERM); finished epochs are saved, resume with: classicnets train --resume {out}" in err
    assert "Traceback" not in err and not (out / LOCK_FILE).exists()
    epochs_done = load_checkpoint(out / "last.ckpt")["progress"]["epoch"]
    assert epochs_done >= 1
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert [int(r["epoch"]) for r in metric_rows(out)] == [1, 2, 3]


# ----------------------------------------------------------------------------- divergence


def test_non_finite_validation_loss_is_divergence_and_never_the_best(synthetic_data, tmp_path, monkeypatch, capsys):
    real_evaluate, calls = engine_loop.evaluate, []

    def nan_in_epoch_2(*args, **kwargs):
        result = real_evaluate(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # epoch 2's validation: an accuracy that would win, a NaN loss
            return EvalResult(loss=float("nan"), accuracy=1.0, confusion=result.confusion,
                              num_samples=result.num_samples)
        return result

    monkeypatch.setattr(engine_loop, "evaluate", nan_in_epoch_2)
    out = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(out), "--epochs", "3"]) == 3
    err = capsys.readouterr().err
    assert "training diverged: the loss became nan on the validation split in epoch 2" in err
    assert load_checkpoint(out / "last.ckpt")["progress"]["epoch"] == 1
    _, metadata = load_run(out)
    assert metadata["epoch"] == 1 and not (out / "summary.json").exists()


def test_non_finite_validation_loss_in_the_first_epoch_saves_nothing(synthetic_data, tmp_path, monkeypatch):
    def always_nan(*args, **kwargs):
        return EvalResult(loss=float("inf"), accuracy=0.5, confusion=torch.zeros(4, 4, dtype=torch.int64),
                          num_samples=64)

    monkeypatch.setattr(engine_loop, "evaluate", always_nan)
    assert main(["train", *FAST, "--out", str(tmp_path / "run")]) == 3
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- files read back


def test_random_bytes_as_checkpoint_get_our_sentence(finished_run, capsys):
    (finished_run / "last.ckpt").write_bytes(os.urandom(4096))
    assert main(["train", "--resume", str(finished_run), "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "is not a classicnets checkpoint or is damaged" in err and "Traceback" not in err


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_pickle_with_code_never_runs_and_torch_advice_is_not_passed_on(finished_run, capsys):
    torch.save({"model": RunsCode()}, finished_run / "last.ckpt")
    assert main(["train", "--resume", str(finished_run), "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "not a classicnets checkpoint or is damaged" in err and "Python objects" in err
    assert "weights_only" not in err and "Traceback" not in err


def test_a_checkpoint_of_plain_values_but_not_ours_is_refused(finished_run, capsys):
    torch.save({"state_dict": {"w": torch.zeros(2)}}, finished_run / "last.ckpt")
    assert main(["train", "--resume", str(finished_run), "--epochs", "3"]) == 2
    assert "is not a classicnets checkpoint (it lacks model, optimizer" in capsys.readouterr().err


@pytest.mark.parametrize("field, value, words", [
    ("image_size", 10**9, "image_size must be a whole number from 1 to 4,096"),
    ("num_classes", 10**8, "num_classes must be a whole number from 1 to 100,000"),
    ("class_names", ["a", "b"], "class_names holds 2 values for 4 classes"),
    ("std", [0.0], "std must be a list of finite numbers above 0"),
    ("mean", [0.5, 0.5, 0.5], "mean holds 3 values for 1 channels"),
    ("model_kwargs", [1], "model_kwargs must be a mapping"),
])
def test_weights_metadata_is_checked_like_flags(finished_run, field, value, words, capsys):
    weights = finished_run / "best.safetensors"
    tensors = load_file(weights)
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        metadata = dict(handle.metadata())
    metadata[field] = json.dumps(value)
    save_file(tensors, weights, metadata=metadata)
    with pytest.raises(UserError, match=f"metadata field {words}"):
        load_run(finished_run)
    assert main(["export", str(finished_run), "--format", "torchscript", "--out",
                 str(finished_run.parent / "m.pt")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_ported_weights_with_an_absurd_class_count_are_refused(tmp_path):
    from classicnets.models.porting import load_ported_weights

    path = tmp_path / "vgg.safetensors"
    save_file({"w": torch.zeros(1)}, path, metadata={"model": "vgg11", "num_classes": "1000000000", "in_chans": "3"})
    with pytest.raises(UserError, match="num_classes must be between 1 and 100,000"):
        load_ported_weights(path)


def test_save_weights_round_trips_its_metadata(tmp_path):
    save_weights(tmp_path / "w.safetensors", {"w": torch.zeros(1)},
                 {"model": "googlenet", "num_classes": 2, "in_chans": 1, "image_size": 28, "mean": [0.5],
                  "std": [0.25], "class_names": ["a", "b"], "model_kwargs": {}, "epoch": 1, "val_accuracy": 0.5})
    from classicnets.engine.checkpoint import read_weights

    _, metadata = read_weights(tmp_path / "w.safetensors")
    assert metadata["class_names"] == ["a", "b"] and metadata["std"] == [0.25]


# ----------------------------------------------------------------------------- settings that apply


def photo_folder(root: Path) -> Path:
    from PIL import Image

    for name in ("apple", "zebra"):
        (root / name).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (8, 8), (20 * i, 100 if name == "apple" else 200, 7 * i)).save(root / name / f"{i}.png")
    return root


def test_val_size_on_a_photo_folder_is_refused(tmp_path, capsys):
    folder = photo_folder(tmp_path / "photos")
    code = main(["train", "--model", "googlenet", "--dataset", f"folder:{folder}", "--val-size", "100",
                 "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert "val_size does not apply to folder:" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_saved_config_of_a_photo_run_records_no_val_size(tmp_path):
    from classicnets.engine import build_config

    folder = photo_folder(tmp_path / "photos")
    assert build_config(None, {"model": "googlenet", "dataset": f"folder:{folder}"}).val_size is None
    assert build_config(None, {"model": "googlenet"}).val_size == 6000  # Fashion-MNIST reads it
    # a subset run of a photo folder caps its validation part with val_size, so it is kept
    assert build_config(None, {"model": "googlenet", "dataset": f"folder:{folder}", "subset": 8}).val_size == 6000


def test_a_run_may_not_overwrite_the_run_it_starts_from(finished_run, capsys):
    before = file_hashes(finished_run)
    assert main(["train", *FAST, "--out", str(finished_run), "--overwrite", "--init-from", str(finished_run)]) == 2
    assert "lies in the run directory" in capsys.readouterr().err
    assert file_hashes(finished_run) == before
