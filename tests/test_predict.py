"""``classicnets predict``: top-k output (text and JSON lines), Grad-CAM PNGs, folders,
1-channel runs, and bad files reported without stopping the others (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import classicnets
from classicnets.analysis.cam import cam_layer, grad_cam
from classicnets.analysis.predict import predict_images, preprocess
from classicnets.cli.main import main
from classicnets.data.image_io import load_rgb
from classicnets.engine.checkpoint import load_run, save_weights

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

CLASSES = ["cat", "dog", "fox"]


def make_run(run_dir: Path, model_name: str = "googlenet", in_chans: int = 3) -> Path:
    torch.manual_seed(0)
    kwargs = {"aux_logits": False} if model_name.startswith("googlenet") else {}
    model = classicnets.create_model(model_name, num_classes=3, in_chans=in_chans, **kwargs)
    with torch.no_grad():  # a head that does not answer 1/3 for every image
        model.fc.weight.normal_(0, 0.5)
    run_dir.mkdir(parents=True)
    save_weights(run_dir / "best.safetensors", model.state_dict(), {
        "model": model_name, "dataset": "folder:x", "num_classes": 3, "in_chans": in_chans, "image_size": 32,
        "mean": [0.5] * in_chans, "std": [0.25] * in_chans, "class_names": CLASSES, "model_kwargs": kwargs})
    return run_dir


@pytest.fixture(scope="module")
def run_dir(module_tmp_path) -> Path:
    return make_run(module_tmp_path / "run")


def photo(path: Path, seed: int, size: tuple[int, int] = (48, 40), mode: str = "RGB") -> Path:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    shape = (size[1], size[0], channels) if channels else (size[1], size[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def test_json_lines_match_the_model(run_dir, tmp_path, capsys):
    first, second = photo(tmp_path / "a.jpg", 1), photo(tmp_path / "b.png", 2, mode="RGBA")
    assert main(["predict", str(run_dir), str(first), str(second), "--topk", "2", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in records] == [str(first), str(second)]

    model, metadata = load_run(run_dir)
    for record, path in zip(records, (first, second)):
        x, _ = preprocess(load_rgb(path), metadata)
        with torch.no_grad():
            expected = torch.softmax(model(x), 1)[0]
        top = record["predictions"]
        assert len(top) == 2 and top[0]["probability"] >= top[1]["probability"]
        for entry in top:
            assert entry["class"] == CLASSES[entry["index"]]
            assert entry["probability"] == pytest.approx(float(expected[entry["index"]]), abs=1e-6)
        assert top[0]["index"] == int(expected.argmax())


def test_text_output_folders_and_topk_capped_at_the_class_count(run_dir, tmp_path, capsys):
    folder = tmp_path / "photos"
    for i in range(3):
        photo(folder / f"sub{i % 2}" / f"p{i}.jpg", i)
    (folder / "notes.txt").write_text("not an image, and not asked for")
    assert main(["predict", str(run_dir), str(folder), "--topk", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith(str(folder / "sub0" / "p0.jpg") + ": ")
    assert all(line.count("%") == 3 for line in lines)  # all three classes, no more


def test_cam_writes_one_overlay_png_per_image(run_dir, tmp_path, capsys):
    images = [photo(tmp_path / "x" / "same.jpg", 1), photo(tmp_path / "y" / "same.jpg", 2)]
    cams = tmp_path / "cams"
    assert main(["predict", str(run_dir), *map(str, images), "--cam", str(cams), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    written = sorted(cams.iterdir())
    assert [p.name for p in written] == ["same_cam-2.png", "same_cam.png"]  # same stem: both kept
    assert sorted(r["cam"] for r in records) == sorted(map(str, written))
    with Image.open(written[0]) as overlay:
        # The 32 px input, enlarged so a person can see it.
        assert overlay.format == "PNG" and overlay.mode == "RGB" and overlay.size == (224, 224)


def test_grad_cam_is_a_normalised_map_for_vgg_and_googlenet():
    torch.manual_seed(0)
    for name in ("vgg11", "googlenet"):
        model = classicnets.create_model(name, num_classes=3, **({"aux_logits": False} if name == "googlenet" else {}))
        heat = grad_cam(model.eval(), torch.randn(1, 3, 64, 64), target=1)
        assert heat.shape == (64, 64) and float(heat.min()) >= 0 and float(heat.max()) <= 1


@pytest.mark.parametrize("name, size, expected", [
    ("googlenet", 28, "inception3b"), ("googlenet", 64, "inception4e"), ("googlenet", 224, "inception5b"),
    ("googlenet_tv", 28, "inception3b"),  # 3x3 at most: the deepest of the largest maps
    ("vgg11", 28, "features.10"), ("vgg11", 64, "features.15"), ("vgg11", 224, "features.20"),
])
def test_grad_cam_uses_the_deepest_block_with_a_map_of_at_least_4x4(name, size, expected):
    model = classicnets.create_model(name, num_classes=3, in_chans=1).eval()
    assert cam_layer(model, torch.zeros(1, 1, size, size))[0] == expected


@pytest.mark.parametrize("name", ["vgg11_bn", "googlenet"])
def test_grad_cam_of_a_28px_model_shows_where(name):
    # At 28 px the last blocks are 1x1, so a CAM taken there was one flat colour.
    torch.manual_seed(0)
    model = classicnets.create_model(name, num_classes=10, in_chans=1).eval()
    image = torch.randn(1, 1, 28, 28)
    heat = grad_cam(model, image, target=int(model(image).argmax()))
    assert heat.shape == (28, 28)
    assert float(heat.max()) == pytest.approx(1.0) and float(heat.std()) > 0.05


def test_bad_files_are_reported_and_the_rest_classified(run_dir, tmp_path, capsys):
    good = photo(tmp_path / "good.jpg", 3)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("hello")
    missing = tmp_path / "missing.jpg"
    code = main(["predict", str(run_dir), str(empty), str(good), str(text), str(missing)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out.splitlines()[0].startswith(f"{good}: ")
    errors = captured.err.splitlines()
    assert errors == [
        f"classicnets predict: cannot read {empty}: empty file (0 bytes)",
        f"classicnets predict: cannot read {text}: not an image file",
        f"classicnets predict: cannot read {missing}: no such file",
        "classicnets predict: error: 3 of 4 image(s) could not be read; the others were classified.",
    ]
    assert main(["predict", str(run_dir), str(empty), "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"path": str(empty), "error": "empty file (0 bytes)"}
    assert captured.err == "classicnets predict: error: none of the 1 image(s) could be read.\n"


def test_bad_source_and_empty_folder_exit_2(run_dir, tmp_path, capsys):
    image = photo(tmp_path / "a.jpg", 0)
    assert main(["predict", str(tmp_path / "no-run"), str(image)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(run_dir), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "has no image files" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(run_dir), str(image), "--topk", "0"])
    assert exit_info.value.code == 2


def test_one_channel_run_classifies_colour_photos(tmp_path):
    run_dir = make_run(tmp_path / "grey", in_chans=1)
    model, metadata = load_run(run_dir)
    predictions = list(predict_images(model, metadata, [photo(tmp_path / "c.jpg", 5)], topk=1))
    assert len(predictions) == 1 and predictions[0].error is None and predictions[0].top[0][0] in CLASSES
    x, view = preprocess(load_rgb(tmp_path / "c.jpg"), metadata)
    assert x.shape == (1, 1, 32, 32) and view.shape == (1, 32, 32)


def test_help_mentions_the_exit_status(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--help"])
    assert exit_info.value.code == 0
    assert "exit status" in capsys.readouterr().out


def test_cam_path_that_is_a_file_is_refused_before_any_work(run_dir, tmp_path, capsys):
    blocked = tmp_path / "taken"
    blocked.write_text("a file, not a folder")
    code = main(["predict", str(run_dir), str(photo(tmp_path / "a.jpg", 1)), "--cam", str(blocked)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"output path {blocked} exists and is not a directory" in err
