"""Nothing trusted blindly: a run scores another dataset only under the run's own class
names (or by position, when asked and said so), and weights whose outputs are NaN are
named as such instead of giving "cat nan%".

The run is a tiny GoogLeNet trained on ``folder:pets`` (classes cat and dog), written as
``classicnets train`` leaves it; the datasets are folders of small random photos.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import classicnets
from classicnets.analysis.run_data import class_mapping
from classicnets.cli.main import main
from classicnets.engine import build_config
from classicnets.engine.checkpoint import save_weights
from classicnets.errors import UserError

from test_photos import make_folder

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSICNETS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def folders(module_tmp_path) -> dict[str, Path]:
    """The run's dataset, one with the same classes, one with other classes."""
    return {name: make_folder(module_tmp_path / name, {first: 15, second: 15})
            for name, (first, second) in {"pets": ("cat", "dog"), "more-pets": ("cat", "dog"),
                                          "zoo": ("apple", "zebra")}.items()}


def write_folder_run(run_dir: Path, dataset: Path, classes: list[str] = ["cat", "dog"]) -> Path:
    torch.manual_seed(0)
    kwargs = {"aux_logits": False}
    model = classicnets.create_model("googlenet", num_classes=len(classes), in_chans=3, **kwargs)
    run_dir.mkdir(parents=True)
    save_weights(run_dir / "best.safetensors", model.state_dict(), {
        "model": "googlenet", "dataset": f"folder:{dataset}", "num_classes": len(classes), "in_chans": 3,
        "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "class_names": classes, "model_kwargs": kwargs,
        "epoch": 1, "val_accuracy": 0.5})
    build_config(None, {"model": "googlenet", "dataset": f"folder:{dataset}", "image_size": 32,
                        "model_kwargs": kwargs}).save(run_dir / "config.yaml")
    return run_dir


@pytest.fixture(scope="module")
def run(module_tmp_path, folders) -> Path:
    return write_folder_run(module_tmp_path / "run", folders["pets"])


def poison(run_dir: Path) -> Path:
    """Set one weight of the first convolution to NaN, keeping the file's metadata."""
    path = run_dir / "best.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        metadata = handle.metadata()
    first = next(name for name in tensors if name.endswith("weight") and tensors[name].dim() == 4)
    tensors[first].view(-1)[0] = float("nan")
    save_file(tensors, str(path), metadata=metadata)
    return run_dir


@pytest.fixture(scope="module")
def diverged_run(module_tmp_path, folders) -> Path:
    return poison(write_folder_run(module_tmp_path / "diverged", folders["pets"]))


def assert_user_error(capsys, code: int, *fragments: str) -> str:
    """Exit status 2 and one error line on stderr, no traceback; returns stdout. Decoding
    the photos draws progress bars on stderr first (carriage returns): not lines of the message."""
    printed = capsys.readouterr()
    lines = [line for line in re.split(r"[\r\n]", printed.err) if line.strip()]
    messages = [line for line in lines if line.startswith("classicnets ")]
    assert code == 2, printed.err
    assert messages == lines[-1:] and "Traceback" not in printed.err, printed.err
    for fragment in fragments:
        assert fragment in messages[0]
    return printed.out


# ----------------------------------------------------------------------------- class names

@pytest.mark.parametrize("command", ["evaluate", "embed"])
def test_other_class_names_are_refused_naming_both_lists(command, run, folders, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([command, str(run), "--dataset", f"folder:{folders['zoo']}", "--device", "cpu", "--out", str(out)])
    assert_user_error(capsys, code, "[apple, zebra]", "[cat, dog]", "--map-classes-by-position")
    assert not out.exists() or not any(out.iterdir())  # embed makes its folder first, to fail early


def test_mapping_by_position_is_asked_for_and_said(run, folders, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), "--dataset", f"folder:{folders['zoo']}", "--map-classes-by-position",
                 "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "classes mapped by position" in printed and "apple as cat, zebra as dog" in printed
    report = json.loads((out / "evaluation.json").read_text())
    assert report["classes_mapped_by_position"] == {"apple": "cat", "zebra": "dog"}
    assert list(report["per_class"]) == ["cat", "dog"]

    assert main(["embed", str(run), "--dataset", f"folder:{folders['zoo']}", "--map-classes-by-position",
                 "--methods", "pca", "--device", "cpu", "--out", str(tmp_path / "embed")]) == 0
    assert "apple as cat, zebra as dog" in capsys.readouterr().out


def test_a_dataset_with_the_run_classes_needs_no_flag(run, folders, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), "--dataset", f"folder:{folders['more-pets']}", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert "mapped by position" not in capsys.readouterr().out
    assert "classes_mapped_by_position" not in json.loads((out / "evaluation.json").read_text())


def test_the_same_classes_in_another_order_are_refused(folders, tmp_path, capsys):
    backwards = write_folder_run(tmp_path / "backwards", folders["pets"], classes=["dog", "cat"])
    code = main(["evaluate", str(backwards), "--dataset", f"folder:{folders['more-pets']}", "--device", "cpu",
                 "--out", str(tmp_path / "out")])
    assert_user_error(capsys, code, "in another order, [cat, dog] against the run's [dog, cat]")


def test_long_class_lists_are_cut_short_and_the_first_difference_named():
    other = FASHION[:8] + ["Handbag", "Ankle boot"]
    with pytest.raises(UserError) as caught:
        class_mapping(FASHION, other, "folder:shop", by_position=False)
    message = str(caught.value)
    assert "[T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, ... 10 in all]" in message
    assert "first difference at class 8: 'Handbag' vs 'Bag'" in message and len(message) < 400
    assert class_mapping(FASHION, other, "folder:shop", by_position=True)["Handbag"] == "Bag"
    assert class_mapping(FASHION, list(FASHION), "fashion-mnist", by_position=False) is None


# ----------------------------------------------------------------------------- non-finite outputs

def test_predict_names_nan_outputs_instead_of_printing_them(diverged_run, folders, capsys):
    image = folders["pets"] / "cat" / "cat_0.png"
    code = main(["predict", str(diverged_run), str(image)])
    printed = assert_user_error(capsys, code, f"the weights in {diverged_run / 'best.safetensors'} produce "
                                              f"non-finite outputs (NaN) on {image}; the run may have diverged")
    assert "nan" not in printed.lower()


@pytest.mark.parametrize("command", ["evaluate", "embed"])
def test_evaluate_and_embed_name_nan_outputs(command, diverged_run, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([command, str(diverged_run), "--device", "cpu", "--out", str(out)])
    assert_user_error(capsys, code, f"the weights in {diverged_run / 'best.safetensors'} produce non-finite outputs",
                      "test images", "the run may have diverged")
    assert not any(out.glob("*.json")) and not any(out.glob("*.npz"))


def test_export_refuses_nan_weights_before_writing(diverged_run, tmp_path, capsys):
    out = tmp_path / "model.pt"
    code = main(["export", str(diverged_run), "--format", "torchscript", "--out", str(out)])
    assert_user_error(capsys, code, "non-finite outputs (NaN) on random inputs")
    assert not out.exists()
