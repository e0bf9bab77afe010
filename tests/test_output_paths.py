"""No command writes over what it reads, over a run's own files or over a photo.

Every command with an output option is pointed at such a file; each attempt must exit with
status 2 and one line on stderr, and every file of the run, the photos and the inputs must
hash the same afterwards (and no file may appear in the run). The same outputs may replace
the figures classicnets drew, so that a command can be run again.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import classicnets.data
from classicnets.cli.main import main
from classicnets.errors import UserError
from classicnets.files import is_drawn_figure, overwrite_refusal, refuse_overwrite_in, same_path

from test_evaluate_cli import assert_user_error, synthetic_build_data, write_run

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def fingerprint(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (files or folders), by path."""
    files = []
    for root in roots:
        files += [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


def photo(path: Path, seed: int = 0) -> Path:
    """A small photo-like image (no drawing tag), in the format its suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def drawn_png(path: Path) -> Path:
    """A PNG drawn with matplotlib, as every classicnets figure is."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 2))
    figure.subplots().plot([0, 1], [1, 0])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
def synthetic_data(monkeypatch):
    monkeypatch.setattr(classicnets.data, "build_data", synthetic_build_data)


@pytest.fixture(scope="module")
def run(module_tmp_path) -> Path:
    """A finished run, with the test confusion matrix training draws."""
    run_dir = write_run(module_tmp_path / "googlenet-toy")
    drawn_png(run_dir / "confusion_matrix.png")
    return run_dir


def refused(capsys, argv: list[str], kept: list[Path], *fragments: str) -> None:
    """``argv`` exits 2 with one line naming ``fragments``, and every file under ``kept`` is unchanged."""
    before = fingerprint(*kept)
    assert_user_error(capsys, main(argv), *fragments)
    assert fingerprint(*kept) == before


# ----------------------------------------------------------------------------- the checks themselves

def test_same_path_sees_through_spellings_symlinks_and_hard_links(tmp_path):
    target = (tmp_path / "a.bin")
    target.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.bin").symlink_to(target)
    os.link(target, tmp_path / "hard.bin")
    assert same_path(target, tmp_path / "sub" / ".." / "a.bin")
    assert same_path(tmp_path / "link.bin", target)
    assert same_path(tmp_path / "hard.bin", target)
    assert same_path(tmp_path / "missing", tmp_path / "sub" / ".." / "missing")
    assert not same_path(tmp_path / "missing", target)


def test_only_figures_classicnets_drew_count_as_drawn(tmp_path):
    assert is_drawn_figure(drawn_png(tmp_path / "chart.png"))
    assert not is_drawn_figure(photo(tmp_path / "photo.png"))
    assert not is_drawn_figure(photo(tmp_path / "photo.jpg"))
    assert not is_drawn_figure(tmp_path / "missing.png")
    (tmp_path / "short.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert not is_drawn_figure(tmp_path / "short.png")


def test_overwrite_refusal_names_what_would_be_lost(tmp_path):
    kept = {tmp_path / "config.yaml": "the run's own config.yaml"}
    assert overwrite_refusal(tmp_path / "config.yaml", kept) == "the run's own config.yaml"  # even unwritten
    image = photo(tmp_path / "cat.jpg")
    assert overwrite_refusal(image, {}, figure=True) == f"the image {image}"
    chart = drawn_png(tmp_path / "chart.png")
    assert overwrite_refusal(chart, {}, figure=True) is None  # drawing it again
    assert overwrite_refusal(chart, {}) == f"the image {chart}"  # a report or a manifest is no figure
    assert overwrite_refusal(tmp_path / "new.png", {}) is None
    with pytest.raises(UserError, match="would overwrite the image"):
        refuse_overwrite_in(tmp_path, ["results.json", "cat.jpg"], {})


# ----------------------------------------------------------------------------- every command

def test_evaluate_refuses_the_run_directory_itself(run, synthetic_data, capsys):
    refused(capsys, ["evaluate", str(run), "--device", "cpu", "--limit", "20", "--out", str(run)], [run],
            f"--out {run} would overwrite the run's own confusion_matrix.png", "eval-test-none-first20")


def test_evaluate_refuses_a_folder_of_photos_and_redraws_its_own_figures(run, synthetic_data, tmp_path, capsys):
    photos = tmp_path / "photos"
    photo(photos / "mistakes.png")
    refused(capsys, ["evaluate", str(run), "--device", "cpu", "--out", str(photos)], [run, photos],
            "would overwrite the image", "mistakes.png")
    out = tmp_path / "eval"
    for _ in range(2):  # the second run replaces the figures of the first
        assert main(["evaluate", str(run), "--device", "cpu", "--limit", "8", "--out", str(out)]) == 0
    assert is_drawn_figure(out / "confusion_matrix.png")


def test_embed_refuses_a_photo_in_its_folder(run, synthetic_data, tmp_path, capsys):
    out = tmp_path / "maps"
    photo(out / "pca.png")
    refused(capsys, ["embed", str(run), "--device", "cpu", "--methods", "pca", "--limit", "8", "--out", str(out)],
            [run, out], f"the image {out / 'pca.png'}")


def test_activations_refuses_to_draw_over_its_own_image(run, tmp_path, capsys):
    image = photo(tmp_path / "stem1.png")
    refused(capsys, ["activations", str(run), str(image), "--layers", "stem1", "--out", str(tmp_path)],
            [run, image], f"the input {image}")


def test_filters_refuses_run_files_and_photos_but_redraws_its_figure(run, tmp_path, capsys):
    refused(capsys, ["filters", str(run), "--out", str(run / "best.safetensors")], [run],
            "the run's own best.safetensors")
    image = photo(tmp_path / "cat.jpg")
    refused(capsys, ["filters", str(run), "--out", str(image)], [run, image], f"the image {image}")
    for _ in range(2):
        assert main(["filters", str(run), "--out", str(tmp_path / "filters.png")]) == 0


def test_compare_refuses_a_run_file_as_report(run, capsys):
    refused(capsys, ["compare", str(run), "--no-bench", "--out", str(run / "config.yaml")], [run],
            "the run's own config.yaml")


def test_export_refuses_the_weights_it_reads(run, tmp_path, capsys):
    refused(capsys, ["export", str(run), "--format", "torchscript", "--out", str(run / "best.safetensors")],
            [run], "the run's own best.safetensors")
    loose = tmp_path / "weights.safetensors"  # a weights file outside any run directory
    loose.write_bytes((run / "best.safetensors").read_bytes())
    refused(capsys, ["export", str(loose), "--format", "torchscript", "--out", str(loose)], [run, loose],
            f"the input {loose}")
    link = tmp_path / "link.pt"
    link.symlink_to(run / "summary.json")
    refused(capsys, ["export", str(run), "--format", "torchscript", "--out", str(link)], [run],
            "the run's own summary.json")


def test_port_refuses_a_run_file_and_its_source(run, tmp_path, capsys):
    refused(capsys, ["port", "vgg11", "--from-file", str(tmp_path / "vgg11.pth"), "--out",
                     str(run / "best.safetensors")], [run], "the run's own best.safetensors")
    source = tmp_path / "vgg11.pth"
    source.write_bytes(b"not read")
    refused(capsys, ["port", "vgg11", "--from-file", str(source), "--out", str(source)], [source],
            f"the input {source}")


def test_split_refuses_a_photo_and_other_files_but_rewrites_a_manifest(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLASSICNETS_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "ds"
    for name in ("a", "b"):
        for i in range(5):
            photo(data / name / f"{name}{i}.jpg", seed=i)
    kept = [data]
    refused(capsys, ["split", f"folder:{data}", "--val", "0.2", "--test", "0.2", "--out", str(data / "a" / "a0.jpg")],
            kept, f"the image {data / 'a' / 'a0.jpg'}")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    refused(capsys, ["split", f"folder:{data}", "--val", "0.2", "--test", "0.2", "--out", str(notes)],
            kept + [notes], "not a split manifest")
    manifest = tmp_path / "split.csv"
    for seed in ("0", "1"):  # a manifest is rewritten
        assert main(["split", f"folder:{data}", "--val", "0.2", "--test", "0.2", "--seed", seed,
                     "--out", str(manifest)]) == 0
    assert manifest.read_text().startswith("split,label,path\n")


def test_predict_cam_refuses_photos_and_redraws_its_overlays(run, tmp_path, capsys):
    photos = tmp_path / "photos"
    image, lookalike = photo(photos / "x.png"), photo(photos / "x_cam.png", seed=1)
    refused(capsys, ["predict", str(run), str(image), "--cam", str(photos)], [run, photos],
            f"--cam {photos} would overwrite the image {lookalike}")
    cams = tmp_path / "cams"
    for _ in range(2):  # the overlays of the first run are redrawn by the second
        assert main(["predict", str(run), str(image), "--cam", str(cams)]) == 0
    assert is_drawn_figure(cams / "x_cam.png")
