"""``classicnets evaluate / embed / activations / filters / compare / export`` as a user runs them.

Runs are written the way ``classicnets train`` leaves them (best.safetensors with its
metadata, config.yaml, summary.json). Most tests read a small synthetic dataset put in
place of ``build_data`` (4 classes of 12x12 grey images), built with the data layer's
own batchers; one evaluates on real Fashion-MNIST.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import classicnets
import classicnets.data
from classicnets.cli.main import main
from classicnets.data import BatchTransform, DataBundle, DeviceBatcher, channel_mean_std
from classicnets.engine import build_config, train
from classicnets.engine.checkpoint import load_run, save_weights

from test_photos import make_folder, make_kaggle

CLASSES = ["circle", "square", "stripe", "cross"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]


def synthetic_images(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    templates = torch.randint(0, 256, (len(CLASSES), 1, 12, 12), generator=torch.Generator().manual_seed(7))
    labels = torch.arange(count) % len(CLASSES)
    noise = torch.randint(-60, 61, (count, 1, 12, 12), generator=torch.Generator().manual_seed(seed))
    return (templates[labels] + noise).clamp(0, 255).to(torch.uint8), labels


def synthetic_build_data(name, *, data_dir, image_size, batch_size, eval_batch_size, device, seed,
                         val_size=6000, subset=None, augment=None, loader="auto", num_workers=2,
                         download=True, rank=0, world_size=1, manifest=None, skip_bad=False) -> DataBundle:
    """Stands in for ``build_data``: 48 train, 24 val, 40 test images (no photo options apply)."""
    assert manifest is None and skip_bad is False
    device = torch.device(device)
    train_images, train_labels = synthetic_images(72, seed=1)
    test_images, test_labels = synthetic_images(40, seed=2)
    train_idx, val_idx = torch.arange(48), torch.arange(48, 72)
    mean, std = channel_mean_std(train_images[train_idx])

    def batcher(images, labels, indices) -> DeviceBatcher:
        return DeviceBatcher(images, labels, indices, batch_size=eval_batch_size, train=False,
                             transform=BatchTransform(mean, std, image_size, None, device), device=device, seed=seed)

    return DataBundle(
        train=batcher(train_images, train_labels, train_idx), val=batcher(train_images, train_labels, val_idx),
        test=batcher(test_images, test_labels, torch.arange(40)), num_classes=len(CLASSES), in_chans=1,
        class_names=list(CLASSES), mean=mean, std=std, image_size=image_size,
        split_sizes={"train": 48, "val": 24, "test": 40})


@pytest.fixture
def synthetic_data(monkeypatch):
    monkeypatch.setattr(classicnets.data, "build_data", synthetic_build_data)


def write_run(run_dir: Path, model_name: str = "googlenet", classes: list[str] = CLASSES, dataset: str = "toy",
              image_size: int = 32, mean: float = 0.45, std: float = 0.3) -> Path:
    """A run directory as ``classicnets train`` leaves it."""
    torch.manual_seed(0)
    model = classicnets.create_model(model_name, num_classes=len(classes), in_chans=1)
    run_dir.mkdir(parents=True)
    save_weights(run_dir / "best.safetensors", model.state_dict(), {
        "model": model_name, "dataset": dataset, "num_classes": len(classes), "in_chans": 1,
        "image_size": image_size, "mean": [mean], "std": [std], "class_names": classes, "model_kwargs": {},
        "epoch": 2, "val_accuracy": 0.25})
    build_config(None, {"model": model_name, "dataset": dataset, "image_size": image_size}).save(
        run_dir / "config.yaml")
    (run_dir / "summary.json").write_text(json.dumps({
        "test_accuracy": 0.25, "best_val_accuracy": 0.3, "best_epoch": 2, "epochs": 2, "wall_time_s": 12.0,
        "train_images_per_s": 100.0, "device": "cpu (2 threads)"}))
    return run_dir


@pytest.fixture(scope="module")
def run(module_tmp_path) -> Path:
    return write_run(module_tmp_path / "googlenet-toy")


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 2000, path


def assert_user_error(capsys, code: int, *fragments: str) -> None:
    """Exit status 2 and one line on stderr, no traceback."""
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err


# ----------------------------------------------------------------------------- evaluate

def test_evaluate_reports_what_a_direct_computation_gives(run, synthetic_data, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), "--device", "cpu", "--out", str(out), "--batch-size", "16"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    # the same images, normalised with the run's statistics, through the same network
    model, metadata = load_run(run)
    data = synthetic_build_data("toy", data_dir=None, image_size=32, batch_size=16, eval_batch_size=16,
                                device="cpu", seed=0)
    images, labels = zip(*data.test)
    x = (torch.cat(images) * torch.tensor(data.std) + torch.tensor(data.mean) - 0.45) / 0.3
    with torch.no_grad():
        probs = model(x).softmax(dim=1)
    labels = torch.cat(labels)
    assert report["num_samples"] == 40
    assert report["top1_accuracy"] == pytest.approx((probs.argmax(1) == labels).double().mean().item())
    assert report["top5_accuracy"] is None  # 4 classes
    assert report["confusion_matrix"] == torch.bincount(labels * 4 + probs.argmax(1), minlength=16).view(4, 4).tolist()
    assert set(report["per_class"]) == set(CLASSES)
    assert 0 <= report["expected_calibration_error"] <= 1
    for name in ("confusion_matrix.png", "mistakes.png", "reliability.png"):
        assert_png(out / name)
    printed = capsys.readouterr().out
    assert "top-1 accuracy" in printed and "top-5 accuracy: n/a" in printed


def test_evaluate_ten_crop_dense_on_the_validation_split(run, synthetic_data, capsys):
    assert main(["evaluate", str(run), "--device", "cpu", "--split", "val", "--tta", "10crop", "--dense",
                 "--limit", "6", "--mistakes", "4"]) == 0
    out = run / "eval-val-10crop-dense-first6"  # --limit names the folder too
    report = json.loads((out / "evaluation.json").read_text())
    assert report["num_samples"] == 6 and report["tta_views"] == 10 and report["dense"] is True
    assert len(report["most_confident_mistakes"]) <= 4
    confidences = [m["confidence"] for m in report["most_confident_mistakes"]]
    assert confidences == sorted(confidences, reverse=True)
    assert_png(out / "mistakes.png")


def test_evaluate_multiscale_with_chosen_scales(run, synthetic_data, tmp_path):
    out = tmp_path / "ms"
    assert main(["evaluate", str(run), "--device", "cpu", "--tta", "multiscale", "--scales", "0.75,1.25",
                 "--limit", "4", "--out", str(out)]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["tta_views"] == 4 and "24, 40 px" in report["tta_description"]


def test_evaluate_on_fashion_mnist(tmp_path, fashion_mnist_dir, capsys):
    run = write_run(tmp_path / "fm", classes=FASHION_MNIST_CLASSES, dataset="fashion-mnist", mean=0.286,
                    std=0.353)
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), "--data-dir", str(fashion_mnist_dir), "--device", "cpu", "--limit", "64",
                 "--tta", "flip", "--out", str(out)]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["num_samples"] == 64 and report["tta_views"] == 2
    assert 0 <= report["top1_accuracy"] <= report["top5_accuracy"] <= 1
    assert sum(row["support"] for row in report["per_class"].values()) == 64
    assert "fashion-mnist test" in capsys.readouterr().out


def test_evaluate_user_errors(run, synthetic_data, tmp_path, capsys):
    assert_user_error(capsys, main(["evaluate", str(tmp_path / "missing")]), "does not exist")
    ten_classes = write_run(tmp_path / "ten", classes=FASHION_MNIST_CLASSES)
    assert_user_error(capsys, main(["evaluate", str(ten_classes), "--device", "cpu"]), "4 classes", "predicts 10")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_user_error(capsys, main(["evaluate", str(run), "--device", "cpu", "--out", str(blocker)]),
                      "not a directory")
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(run), "--scales", "1,-1"])
    assert exit_info.value.code == 2
    assert "positive" in capsys.readouterr().err


def test_evaluate_uses_the_manifest_the_run_was_trained_with(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLASSICNETS_CACHE", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "photos", {"a": 10, "b": 10})
    manifest = tmp_path / "split.csv"  # outside the root: found only through the run's config
    assert main(["split", f"folder:{root}", "--val", "0.2", "--test", "0.4", "--seed", "3",
                 "--out", str(manifest)]) == 0
    run_dir = tmp_path / "run"
    train(build_config(None, {"model": "googlenet", "dataset": f"folder:{root}", "manifest": str(manifest),
                              "image_size": 16, "epochs": 1, "batch_size": 8, "device": "cpu",
                              "out": str(run_dir)}), quiet=True)
    test_images = json.loads((run_dir / "summary.json").read_text())["test_images"]
    assert test_images == 8  # 40% of 20; the default split would test on 2
    out = tmp_path / "eval"
    assert main(["evaluate", str(run_dir), "--device", "cpu", "--out", str(out)]) == 0
    assert json.loads((out / "evaluation.json").read_text())["num_samples"] == test_images


# ----------------------------------------------------------------------------- embed, activations, filters

def test_embed_saves_features_and_both_maps(run, synthetic_data, capsys):
    pytest.importorskip("sklearn")
    assert main(["embed", str(run), "--device", "cpu", "--limit", "30"]) == 0
    out = run / "embed-test"
    with np.load(out / "embeddings.npz", allow_pickle=False) as saved:
        assert saved["features"].shape == (30, 1024)  # GoogLeNet's pooled inception 5b
        assert saved["labels"].tolist() == [i % 4 for i in range(30)]
        assert saved["class_names"].tolist() == CLASSES
    assert_png(out / "pca.png")
    assert_png(out / "tsne.png")
    assert "1024-d penultimate features" in capsys.readouterr().out


def test_activations_draw_one_grid_per_block(run, tmp_path, capsys):
    image = tmp_path / "photo.jpg"
    Image.new("RGB", (50, 40), (200, 120, 40)).save(image)
    out = tmp_path / "maps"
    assert main(["activations", str(run), str(image), "--out", str(out), "--channels", "1"]) == 0
    expected = ["stem1", "stem2"] + [f"inception{n}" for n in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(expected)
    for name in expected:
        assert_png(out / f"{name}.png")
    assert main(["activations", str(run), str(image), "--layers", "inception4a", "conv2", "--channels", "3"]) == 0
    assert sorted(p.name for p in (run / "activations" / "photo").glob("*.png")) == ["conv2.png", "inception4a.png"]
    capsys.readouterr()
    assert_user_error(capsys, main(["activations", str(run), str(image), "--layers", "block9"]), "block9")
    assert_user_error(capsys, main(["activations", str(run), str(image), "--layers", "fc"]),
                      "layer fc outputs [1, 4], not a feature map")
    assert_user_error(capsys, main(["activations", str(run), str(tmp_path / "none.jpg")]), "does not exist")


def test_filters_drawn(run, tmp_path, capsys):
    assert main(["filters", str(run / "best.safetensors")]) == 0  # a weights file works as well as its folder
    assert_png(run / "filters.png")
    capsys.readouterr()
    assert_user_error(capsys, main(["filters", str(tmp_path / "missing")]), "does not exist")


# ----------------------------------------------------------------------------- compare, export

def test_compare_writes_the_report_and_charts(run, tmp_path, capsys):
    other = write_run(tmp_path / "googlenet-toy", model_name="googlenet_paper")  # same name, other folder
    out = tmp_path / "cmp" / "report.md"
    # timings are covered by test_compare.py; here the command's wiring
    assert main(["compare", str(run), str(other), "--out", str(out), "--batch-size", "2", "--no-bench"]) == 0
    text = out.read_text()
    for row in ("| parameters |", "| MACs per image |", "| parameter memory (fp32) |",
                "| forward activation memory, batch 2 |", "| saved for backward, batch 2 |",
                "| training throughput, CPU, batch 2 (measured) | not measured | not measured |",
                "| inference latency, CPU, 1 image (measured) |",
                "| best validation accuracy |", "| test accuracy |", "| training wall time |"):
        assert row in text
    assert "googlenet_paper" in text and "30.00%" in text  # best validation accuracy from summary.json
    for chart in ("size", "memory", "speed", "accuracy"):
        assert_png(tmp_path / "cmp" / "report_charts" / f"{chart}.png")
    capsys.readouterr()
    assert_user_error(capsys, main(["compare", str(run), str(tmp_path / "nope"), "--no-bench"]), "nope")


def test_export_with_parity_check(run, capsys):
    # ONNX itself is covered by test_export.py; the command's wiring is the same for both formats
    assert main(["export", str(run), "--format", "torchscript", "--dynamic-batch"]) == 0
    assert (run / "model.pt").stat().st_size > 1_000_000
    printed = capsys.readouterr().out
    assert "any batch size" in printed and "check ok" in printed and "batch 1, 3" in printed


def test_export_user_errors(run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(run)])  # --format is required
    assert exit_info.value.code == 2
    capsys.readouterr()
    assert_user_error(capsys, main(["export", str(tmp_path / "missing"), "--format", "torchscript"]),
                      "does not exist")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_user_error(capsys, main(["export", str(run), "--format", "torchscript", "--out", str(blocker / "m.pt")]),
                      "not a directory")


def test_an_output_file_that_is_a_directory_is_refused_up_front(run, tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    message = f"output path {folder} is a directory; give a file name."
    assert_user_error(capsys, main(["filters", str(run), "--out", str(folder)]), message)
    assert_user_error(capsys, main(["export", str(run), "--format", "torchscript", "--out", str(folder)]),
                      message)
    assert main(["compare", str(run), "--out", str(folder), "--no-bench"]) == 2
    printed = capsys.readouterr()
    assert "measuring" not in printed.out  # refused before the runs are measured
    assert message in printed.err and "Traceback" not in printed.err
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("command", ["evaluate", "embed", "activations", "filters", "compare", "export"])
def test_help_works(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"classicnets {command}" in capsys.readouterr().out


def test_default_evaluation_folders_differ_for_different_settings():
    from classicnets.cli.evaluate import default_folder_name
    from classicnets.cli.main import build_parser

    def name(*flags):
        return default_folder_name(build_parser().parse_args(["evaluate", "RUN", *flags]))

    assert name() == "eval-test-none"
    assert name("--split", "val", "--tta", "10crop", "--dense") == "eval-val-10crop-dense"
    assert name("--scale", "1.5") == "eval-test-none-scale1.5"
    assert name("--tta", "multiscale", "--scales", "0.9,1.1") == "eval-test-multiscale-scales0.9_1.1"
    assert name("--dataset", "folder:/data/my photos/", "--limit", "100") == "eval-test-none-folder_my photos-first100"
    assert len({name(), name("--scale", "2"), name("--dataset", "cifar10"), name("--limit", "5")}) == 4


def test_another_dataset_gets_its_own_split_not_the_runs_sizes():
    from classicnets.analysis.run_data import _split_options

    settings = {"dataset": "cats-vs-dogs", "subset": 100, "val_size": 50, "manifest": "split.csv", "skip_bad": True}
    assert _split_options(settings, own=True) == {"val_size": 50, "subset": 100, "manifest": "split.csv",
                                                  "skip_bad": True}
    assert _split_options(settings, own=False) == {}  # e.g. --dataset folder:PATH with 40 training images


def test_evaluate_scores_every_photo_of_another_kaggle_folder(tmp_path, monkeypatch, capsys):
    """How others check a cats-vs-dogs recipe: --split all scores each photo of their folder once."""
    monkeypatch.setenv("CLASSICNETS_CACHE", str(tmp_path / "cache"))
    make_kaggle(tmp_path / "ours" / "cats-vs-dogs", cats=10, dogs=10)
    run_dir = tmp_path / "run"
    train(build_config(None, {"model": "lenet5", "dataset": "cats-vs-dogs", "data_dir": str(tmp_path / "ours"),
                              "image_size": 32, "epochs": 1, "batch_size": 8, "device": "cpu",
                              "out": str(run_dir)}), quiet=True)
    make_kaggle(tmp_path / "theirs" / "cats-vs-dogs", cats=7, dogs=6)
    out = tmp_path / "eval"
    assert main(["evaluate", str(run_dir), "--dataset", "cats-vs-dogs", "--data-dir", str(tmp_path / "theirs"),
                 "--split", "all", "--device", "cpu", "--out", str(out)]) == 0
    assert "on 13 cats-vs-dogs all images" in capsys.readouterr().out
    report = json.loads((out / "evaluation.json").read_text())
    assert report["num_samples"] == 13
    assert {name: row["support"] for name, row in report["per_class"].items()} == {"cat": 7, "dog": 6}
    # The run's own test split stays what it was.
    assert main(["evaluate", str(run_dir), "--device", "cpu", "--out", str(tmp_path / "own")]) == 0
    own = json.loads((tmp_path / "own" / "evaluation.json").read_text())["num_samples"]
    assert own == json.loads((run_dir / "summary.json").read_text())["test_images"] < 20
