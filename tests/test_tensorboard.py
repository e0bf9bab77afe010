"""``--tensorboard``: the event files a run writes, read back with TensorBoard's own reader,
including a resumed run that must append without duplicate steps."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install -e '.[dev]')")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from classicnets.cli.main import main  # noqa: E402
from classicnets.engine import loop as engine_loop  # noqa: E402

from test_train import FAST, synthetic_build_data  # noqa: E402

STEPS_PER_EPOCH = 4  # 128 synthetic training images, batch 32


@pytest.fixture
def synthetic_data(monkeypatch):
    monkeypatch.setattr(engine_loop, "build_data", synthetic_build_data)


def read_log(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def steps(events: EventAccumulator, tag: str) -> list[int]:
    return [event.step for event in events.Scalars(tag)]


def test_a_run_writes_what_pytorch_users_expect(synthetic_data, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(out), "--tensorboard"]) == 0
    events = read_log(out)
    scalars = set(events.Tags()["scalars"])
    for tag in ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr", "images_per_s", "train/loss_step"):
        assert tag in scalars, tag
    assert steps(events, "val/accuracy") == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert steps(events, "train/loss_step") == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]  # log_interval 20 > 4 steps
    assert {"curves", "test/confusion_matrix"} <= set(events.Tags()["images"])
    val_acc = [event.value for event in events.Scalars("val/accuracy")]
    assert all(0 <= value <= 1 for value in val_acc)
    # the hyperparameters with the final metrics (the HPARAMS plugin's summary)
    hparams = read_log_plugins(out)
    assert "hparams" in hparams


def read_log_plugins(run_dir: Path) -> set[str]:
    names = set()
    for folder in [run_dir / "tensorboard", *(p for p in (run_dir / "tensorboard").iterdir() if p.is_dir())]:
        events = EventAccumulator(str(folder))
        events.Reload()
        names |= set(events.PluginTagToContent("hparams") and ["hparams"] or [])
    return names


def test_resume_appends_without_duplicate_steps(synthetic_data, tmp_path, monkeypatch):
    real_loss, calls = engine_loop.training_loss, []

    def interrupt_late_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:  # epoch 2's steps 1-3 were logged (log interval 1), then Ctrl-C
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(engine_loop, "training_loss", interrupt_late_in_epoch_2)
    recipe = tmp_path / "every_step.yaml"
    recipe.write_text("log_interval: 1\ntensorboard: true\n")
    out = tmp_path / "run"
    assert main(["train", "--recipe", str(recipe), *FAST, "--out", str(out), "--epochs", "3"]) == 130
    interrupted = read_log(out)
    assert steps(interrupted, "val/accuracy") == [STEPS_PER_EPOCH]
    assert steps(interrupted, "train/loss_step")[-1] == STEPS_PER_EPOCH + 3  # logged past the last commit

    monkeypatch.setattr(engine_loop, "training_loss", real_loss)
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    events = read_log(out)
    for tag in ("val/accuracy", "train/loss", "lr", "train/loss_step"):
        logged = steps(events, tag)
        assert logged == sorted(set(logged)), (tag, logged)  # no step twice
    assert steps(events, "train/loss_step") == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    assert steps(events, "val/accuracy") == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH, 3 * STEPS_PER_EPOCH]


def test_without_the_flag_no_log_is_written(synthetic_data, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(out), "--epochs", "1"]) == 0
    assert not (out / "tensorboard").exists()
