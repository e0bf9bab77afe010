"""The training doctor: a run still at chance after its first steps is told why, once, and
trains on; a healthy run hears nothing."""

from __future__ import annotations

import pytest
import torch

import classicnets

from classicnets.cli.main import main
from classicnets.data import BatchTransform, DataBundle, DeviceBatcher, channel_mean_std
from classicnets.engine import doctor as training_doctor
from classicnets.engine import loop as engine_loop
from classicnets.engine.config import build_config
from classicnets.engine.doctor import TrainingDoctor

from test_train import CLASSES, FAST, synthetic_build_data, synthetic_images

DOCTOR_SAYS = "training doctor:"


def random_label_data(name, *, image_size, batch_size, eval_batch_size, device, seed, **ignored) -> DataBundle:
    """test_train's synthetic images with labels drawn at random: nothing to learn."""
    images, _ = synthetic_images(192, seed=1)
    labels = torch.randint(0, len(CLASSES), (192,), generator=torch.Generator().manual_seed(5))
    mean, std = channel_mean_std(images[:128])

    def batcher(indices, train):
        return DeviceBatcher(images, labels, indices, batch_size=batch_size if train else eval_batch_size, train=train,
                             transform=BatchTransform(mean, std, image_size, None, torch.device(device)),
                             device=torch.device(device), seed=seed)

    return DataBundle(train=batcher(torch.arange(128), True), val=batcher(torch.arange(128, 192), False),
                      test=batcher(torch.arange(128, 192), False), num_classes=len(CLASSES), in_chans=1,
                      class_names=list(CLASSES), mean=mean, std=std, image_size=image_size,
                      split_sizes={"train": 128, "val": 64, "test": 64})


@pytest.fixture
def judged_early(monkeypatch, tmp_path):
    monkeypatch.setattr(training_doctor, "MIN_STEPS", 8)  # 4 steps per epoch here
    recipe = tmp_path / "log_every_step.yaml"
    recipe.write_text("log_interval: 1\n")
    return recipe


def test_a_run_stuck_at_chance_is_told_why_once_and_trains_on(judged_early, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(engine_loop, "build_data", random_label_data)
    out = tmp_path / "run"
    assert main(["train", "--recipe", str(judged_early), *FAST, "--epochs", "4", "--lr", "1e-6",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count(DOCTOR_SAYS) == 1
    paragraph = next(line for line in printed.splitlines() if DOCTOR_SAYS in line)
    assert "chance for 4 classes is 25.0%" in paragraph and "ln 4 = 1.386" in paragraph
    assert "no warm-up" in paragraph and "lr 1e-06" in paragraph
    assert (out / "summary.json").is_file()  # it kept training to the end


def test_a_healthy_run_hears_nothing(fashion_mnist_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(training_doctor, "MIN_STEPS", 55)  # 63 steps in this run's one epoch
    recipe = tmp_path / "log_often.yaml"
    recipe.write_text("log_interval: 10\nmodel_kwargs: {aux_logits: false}\n")
    assert main(["train", "--recipe", str(recipe), "--model", "googlenet", "--data-dir", str(fashion_mnist_dir),
                 "--subset", "2000", "--epochs", "1", "--batch-size", "32", "--optimizer", "adam", "--lr", "0.001",
                 "--device", "cpu",
                 "--quiet", "--out", str(tmp_path / "run")]) == 0
    assert DOCTOR_SAYS not in capsys.readouterr().out


def test_the_diagnosis_names_the_causes_of_a_deep_plain_network():
    config = build_config(None, {"model": "vgg11", "lr": 0.05})
    model = torch.nn.Sequential(*(torch.nn.Conv2d(3, 3, 3) for _ in range(11)))  # no batch norm
    doctor = TrainingDoctor(model, config, num_classes=2)
    assert doctor.check(299, 0.69, 0.5) is None  # too early to judge
    message = doctor.check(300, 0.70, 0.51)
    assert "no batch norm" in message and "lr 0.05" in message and "staged" in message
    assert "ln 2 = 0.693" in message
    assert doctor.check(400, 0.70, 0.51) is None  # once


def test_a_run_that_learns_is_not_stalled():
    doctor = TrainingDoctor(torch.nn.Conv2d(1, 1, 1), build_config(None, {"model": "googlenet"}), num_classes=10)
    assert doctor.check(1000, 0.9, 0.70) is None


def test_the_stalled_photo_run_of_the_issue_is_caught():
    """googlenet (aux off) on cats-vs-dogs at 64 px, batch 64, SGD one-cycle to 0.05, label
    smoothing 0.1, the photo augmentation: training accuracy 50-51% and loss above ln 2 after
    300 steps."""
    config = build_config(None, {"model": "googlenet", "model_kwargs": {"aux_logits": False},
                                 "dataset": "cats-vs-dogs", "image_size": 64, "batch_size": 64,
                                 "optimizer": "sgd", "lr": 0.05, "scheduler": "onecycle",
                                 "label_smoothing": 0.1, "augment": {"scale": [0.25, 1.0], "brightness": 0.4}})
    model = classicnets.create_model("googlenet", num_classes=2, in_chans=3, aux_logits=False)
    doctor = TrainingDoctor(model, config, num_classes=2)
    assert doctor.check(300, 0.74, 0.58) is None  # 58% of 2 classes: it has started
    message = doctor.check(300, 0.705, 0.508)
    assert "after 300 steps the training accuracy is 50.8%" in message and "ln 2 = 0.693" in message
    assert "lr 0.05 with sgd" in message and "lr-find" in message and "augmentation" in message
    assert "no warm-up" not in message  # one-cycle rises from lr/25: that is a warm-up
    assert "no batch norm" not in message and "staged" not in message  # GoogLeNet here has batch norm
