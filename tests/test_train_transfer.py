"""Training on an image folder, starting from another run: the transfer path end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from classicnets.data import build_data
from classicnets.engine import build_config, train
from classicnets.engine import loop as engine_loop
from classicnets.engine.optim import LRSchedule, build_optimizer
from classicnets.models import create_model

from test_train import fast_config, synthetic_data  # noqa: F401  (fixture)

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


def write_folder(root: Path, per_class: int = 10, size: int = 20) -> Path:
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            noise = rng.integers(-30, 31, (size, size, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CLASSICNETS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_folder_run_starts_from_a_grey_run_with_frozen_features(synthetic_data, tmp_path, cache_dir, capsys,
                                                                 monkeypatch):
    grey_run = tmp_path / "grey"
    train(fast_config(grey_run, epochs=1), quiet=True)  # 1 channel, 4 classes, synthetic data
    monkeypatch.setattr(engine_loop, "build_data", build_data)  # the real data layer for the folder
    folder = write_folder(tmp_path / "photos")
    capsys.readouterr()

    config = build_config(None, {
        "model": "googlenet", "model_kwargs": {"aux_logits": False}, "dataset": f"folder:{folder}",
        "init_from": str(grey_run), "freeze": "features", "image_size": 16, "batch_size": 8,
        "epochs": 1, "lr": 0.05, "device": "cpu", "out": str(tmp_path / "colour"),
    })
    summary = train(config, quiet=True)
    out, err = capsys.readouterr()
    assert "adapted" in out and "conv1.conv.weight" in out  # 1 -> 3 channel stem
    assert "checking images" not in err and "decoding photos" not in err  # quiet: no progress bars
    assert "froze the" in out
    assert summary["test_images"] == 3  # 10% of 30 images, stratified: one per class

    before = load_file(grey_run / "best.safetensors")
    after = load_file(tmp_path / "colour" / "best.safetensors")
    # The frozen body keeps the grey run's weights (the stem replicated over RGB, scaled by 1/3) ...
    assert torch.equal(after["inception4a.branch1x1.conv.weight"], before["inception4a.branch1x1.conv.weight"])
    torch.testing.assert_close(after["conv1.conv.weight"], before["conv1.conv.weight"].repeat(1, 3, 1, 1) / 3)
    # ... and the new 3-class head trained.
    assert after["fc.weight"].shape == (3, 1024)


def test_backbone_and_head_learning_rates_follow_the_schedule():
    model = create_model("vgg11", num_classes=3, in_chans=1)
    config = build_config(None, {"model": "vgg11", "lr": 0.1, "backbone_lr": 0.01, "scheduler": "cosine",
                                 "epochs": 2, "device": "cpu"})
    optimizer = build_optimizer(model, config, torch.device("cpu"))
    schedule = LRSchedule(optimizer, config, steps_per_epoch=10)
    schedule.step()
    lrs = {(group["name"], group["weight_decay"] > 0): group["lr"] for group in optimizer.param_groups}
    assert lrs == {("backbone", True): pytest.approx(0.01), ("backbone", False): pytest.approx(0.01),
                   ("head", True): pytest.approx(0.1), ("head", False): pytest.approx(0.1)}
    head = {id(p) for p in model.classifier.parameters()}
    for group in optimizer.param_groups:
        assert all((id(p) in head) == (group["name"] == "head") for p in group["params"])


def test_photo_augment_options_are_checked_for_photo_datasets(tmp_path):
    from classicnets.errors import UserError

    config = build_config(None, {"model": "vgg11", "dataset": "cats-vs-dogs", "augment": {"brightness": 0.2}})
    assert config.augment["brightness"] == 0.2 and config.augment["hflip"] is True  # defaults fill in
    with pytest.raises(UserError, match="crop_padding"):
        build_config(None, {"model": "vgg11", "dataset": "cats-vs-dogs", "augment": {"crop_padding": 4}})
    with pytest.raises(UserError, match="brightness"):
        build_config(None, {"model": "vgg11", "augment": {"brightness": 0.2}})  # Fashion-MNIST has no jitter


def test_the_saved_config_holds_absolute_paths_so_a_run_resumes_from_any_directory(tmp_path, cache_dir, monkeypatch,
                                                                                  capsys):
    from classicnets.cli.main import main

    write_folder(tmp_path / "work" / "photos", per_class=6, size=16)
    monkeypatch.chdir(tmp_path / "work")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: googlenet\nmodel_kwargs: {aux_logits: false}\n")
    flags = ["--recipe", str(recipe), "--dataset", "folder:photos", "--image-size", "16", "--batch-size", "6",
             "--lr", "0.01", "--device", "cpu", "--quiet"]
    assert main(["train", *flags, "--epochs", "1", "--data-dir", "unused-data"]) == 0
    (run_dir,) = (tmp_path / "work" / "runs").iterdir()  # folder:photos named flat, not as nested folders
    # a photo run ends with the command that scores every photo of another folder ...
    hint = capsys.readouterr().out.strip().splitlines()[-1]
    assert hint == (f"to score it on photos it never saw, in a folder laid out like these: classicnets evaluate "
                    f"{run_dir.relative_to(tmp_path / 'work')} --dataset folder:OTHER --split all")  # as the run names itself
    # ... and that command works as printed, OTHER being such a folder
    write_folder(tmp_path / "other", per_class=3, size=16)
    command = hint.split(": ", 1)[1].replace("OTHER", str(tmp_path / "other")).split()
    assert main(command[1:]) == 0
    assert "evaluating googlenet on 9 folder:" in capsys.readouterr().out  # all 9 photos of the other folder
    assert run_dir.name.startswith("googlenet-folder_photos-")
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["dataset"] == f"folder:{tmp_path / 'work' / 'photos'}"
    assert saved["data_dir"] == str(tmp_path / "work" / "unused-data")

    # From another directory: the saved paths still find the photos, and the same relative
    # flag given again (from the run's own directory) is not taken for a different dataset.
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", str(run_dir), "--epochs", "2", "--quiet"]) == 0
    monkeypatch.chdir(tmp_path / "work")
    assert main(["train", "--resume", str(run_dir), "--epochs", "3", "--dataset", "folder:photos", "--quiet"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 3
    capsys.readouterr()


@pytest.mark.parametrize("recipe_kwargs, expected", [({}, True), ({"transform_input": False}, False)])
def test_a_run_from_ported_googlenet_tv_weights_keeps_their_input_scaling(tmp_path, cache_dir, capsys,
                                                                          recipe_kwargs, expected):
    from safetensors.torch import save_file

    # What `classicnets port googlenet_tv` writes: its weights expect transform_input on RGB.
    ported = create_model("googlenet_tv", num_classes=1000, in_chans=3, transform_input=True, init_weights=False)
    source = tmp_path / "googlenet_tv.safetensors"
    save_file(ported.state_dict(), str(source), metadata={
        "model": "googlenet_tv", "source": "torchvision",
        "model_kwargs": json.dumps({"aux_logits": True, "transform_input": True})})
    folder = write_folder(tmp_path / "photos", per_class=6, size=32)
    config = build_config(None, {
        "model": "googlenet_tv", "model_kwargs": {"aux_logits": False, **recipe_kwargs},
        "dataset": f"folder:{folder}", "init_from": str(source), "image_size": 32, "batch_size": 6,
        "epochs": 1, "lr": 0.01, "device": "cpu", "out": str(tmp_path / "run")})
    train(config, quiet=True)
    assert ("kept transform_input=True" in capsys.readouterr().out) == expected
    saved = json.loads(load_file_metadata(tmp_path / "run" / "best.safetensors")["model_kwargs"])
    assert saved.get("transform_input", False) == expected  # evaluate and predict rebuild it so


def load_file_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()
