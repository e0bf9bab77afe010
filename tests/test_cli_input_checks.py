"""Bad command-line values are refused at once with one sentence and exit status 2: non-finite
and oversized numbers, empty paths and names, abbreviated options, options the chosen mode
does not use, and output places that would fail only after the work."""

from __future__ import annotations

import argparse
import errno
import os

import pytest
import torch

import classicnets.analysis.activations as activations_module
import classicnets.models.porting as porting
from classicnets.analysis.activations import plot_activations
from classicnets.cli import common
from classicnets.cli import models as models_command
from classicnets.cli.main import build_parser, main
from classicnets.data.manifest import MANIFEST_NAME

from test_evaluate_cli import assert_user_error, write_run
from test_photos import make_folder


def assert_refused(capsys, argv: list[str], *fragments: str) -> None:
    """argparse's refusal: exit status 2, the reason on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def run(module_tmp_path):
    """A 32 px run of a dataset that does not exist: a command that got past its checks
    would fail on the data instead."""
    return write_run(module_tmp_path / "vgg11-toy", model_name="vgg11", image_size=32)


# ----------------------------------------------------------------------------- non-finite numbers

@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e400"])
def test_positive_float_refuses_non_finite_values(text):
    with pytest.raises(argparse.ArgumentTypeError, match="finite"):
        common.positive_float(text)
    assert common.positive_float("1e300") == 1e300


def test_evaluate_refuses_infinite_scales(run, capsys):
    assert_refused(capsys, ["evaluate", str(run), "--scale", "inf"], "--scale", "finite")
    assert_refused(capsys, ["evaluate", str(run), "--tta", "multiscale", "--scales", "1,inf"], "--scales", "finite")
    assert_refused(capsys, ["evaluate", str(run), "--tta", "multiscale", "--scales", "nan"], "finite")


# ----------------------------------------------------------------------------- upper bounds

def test_seeds_are_capped_as_training_caps_them(capsys):
    limit = 2**32 - 1
    assert build_parser().parse_args(["embed", "RUN", "--seed", str(limit)]).seed == limit
    assert_refused(capsys, ["embed", "RUN", "--methods", "pca", "--seed", "99999999999"], "--seed", f"{limit:,}")
    assert_refused(capsys, ["train", "--seed", str(limit + 1)], "--seed")
    assert_refused(capsys, ["stats", "cifar10", "--seed", str(limit + 1)], "--seed")


@pytest.mark.parametrize("argv", [
    ["stats", "folder:X", "--image-size", "100000"],
    ["summary", "vgg11", "--image-size", "4097"],
    ["summary", "vgg11", "--input-size", "4097"],
    ["train", "--image-size", "4097"],
])
def test_image_sizes_are_capped(capsys, argv):
    assert_refused(capsys, argv, "at most 4,096 px")


@pytest.mark.parametrize("command", [["evaluate", "RUN"], ["embed", "RUN"], ["summary", "vgg11"], ["train"],
                                     ["compare", "RUN"], ["export", "RUN", "--format", "onnx"]])
def test_batch_sizes_are_capped(capsys, command):
    assert build_parser().parse_args([*command, "--batch-size", "65536"]).batch_size == 65536
    assert_refused(capsys, [*command, "--batch-size", "99999999999999999999"], "--batch-size", "at most 65,536")


def test_the_limits_are_the_ones_training_checks():
    from classicnets import limits

    assert (common.MAX_IMAGE_SIZE, common.MAX_BATCH_SIZE, common.MAX_SEED) == (
        limits.MAX_IMAGE_SIZE, limits.MAX_BATCH_SIZE, limits.MAX_SEED)
    assert build_parser().parse_args(["stats", "folder:X", "--image-size", "4096"]).image_size == 4096


def test_evaluate_refuses_test_images_over_the_size_limit(run, capsys):
    # 32 px x 1e6 = 32,000,000 px: refused before any image is loaded, not by the allocator
    assert_user_error(capsys, main(["evaluate", str(run), "--device", "cpu", "--scale", "1e6"]),
                      "--scale 1e+06", "32,000,000 px", "4,096 px", "up to 128")
    assert_user_error(capsys, main(["evaluate", str(run), "--device", "cpu", "--tta", "multiscale",
                                    "--scales", "1,129"]), "--scales 129", "4,128 px")


def test_evaluate_checks_sizes_for_the_scales_the_mode_uses():
    from classicnets.analysis.tta import TTAConfig
    from classicnets.cli.evaluate import check_test_sizes
    from classicnets.errors import UserError

    check_test_sizes(TTAConfig("none", image_size=32, scale=128))  # 4096 px: at the limit
    check_test_sizes(TTAConfig("10crop", image_size=4096))  # its fixed rescale is not an option's
    with pytest.raises(UserError, match="--scale 129"):
        check_test_sizes(TTAConfig("flip", image_size=32, scale=129))


# ----------------------------------------------------------------------------- activations

def test_activations_channels_are_capped(capsys):
    assert build_parser().parse_args(["activations", "RUN", "IMG", "--channels", "256"]).channels == 256
    assert_refused(capsys, ["activations", "RUN", "IMG", "--channels", "100000"], "--channels", "at most 256")


def test_activation_figures_have_no_more_columns_than_the_widest_layer(monkeypatch, tmp_path):
    figures = []
    monkeypatch.setattr(activations_module, "save_figure", lambda figure, path: figures.append(figure) or path)
    maps = {"narrow": torch.rand(1, 3, 4, 4), "wide": torch.rand(1, 5, 4, 4)}
    plot_activations(tmp_path / "a.png", torch.rand(1, 1, 8, 8), maps, [0.5], [0.25], "t", channels=100)
    assert len(figures[0].axes) == 2 * (5 + 1)  # two rows: the image and 5 maps each


# ----------------------------------------------------------------------------- abbreviations

def test_every_parser_refuses_abbreviated_options(capsys):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert not parser.allow_abbrev and not any(p.allow_abbrev for p in subparsers.choices.values())
    # `--npro` went through as --nproc, then torchrun refused the argv it was handed
    assert_refused(capsys, ["train", "--npro", "1", "--model", "vgg11"], "unrecognized arguments: --npro")
    assert_refused(capsys, ["models", "--mark"], "--mark")
    assert_refused(capsys, ["--vers"], "--vers")


# ----------------------------------------------------------------------------- empty values

@pytest.mark.parametrize("argv", [
    ["train", "--init-from", ""], ["train", "--resume", ""], ["train", "--out", ""], ["train", "--recipe", ""],
    ["train", "--model", ""], ["train", "--data-dir", ""], ["train", "--manifest", ""],
    ["predict", "RUN", "x.png", "--cam", ""], ["predict", "", "x.png"], ["predict", "RUN", ""],
    ["split", "folder:X", "--copy", ""], ["split", "folder:X", "--out", ""], ["split", ""],
    ["models", ""], ["summary", ""],
    ["evaluate", "RUN", "--out", ""], ["evaluate", "", "--device", "cpu"], ["evaluate", "RUN", "--data-dir", ""],
    ["embed", "RUN", "--out", ""], ["embed", "RUN", "--dataset", ""],
    ["activations", "RUN", "x.png", "--out", ""], ["activations", "RUN", "x.png", "--layers", ""],
    ["filters", "RUN", "--out", ""], ["export", "RUN", "--format", "onnx", "--out", ""],
    ["compare", "RUN", "--out", ""], ["port", "vgg11", "--out", ""], ["port", "vgg11", "--out", "w", "--from-file", ""],
    ["stats", "folder:X", "--manifest", ""],
])
def test_empty_paths_and_names_are_refused(capsys, argv):
    assert_refused(capsys, argv, "must not be empty")


@pytest.mark.parametrize("argv", [
    ["train", "--out", "  "], ["train", "--init-from", " "], ["evaluate", "RUN", "--data-dir", "\t"],
    ["predict", "RUN", " "], ["port", "vgg11", "--out", "   "],
])
def test_blank_paths_are_refused_like_empty_ones(capsys, argv):
    # a recipe's `out: "  "` is refused; the same text as a flag must not create a folder named by spaces
    assert_refused(capsys, argv, "must not be empty")


# ----------------------------------------------------------------------------- split

def test_split_refuses_a_bad_copy_folder_before_writing_anything(tmp_path, capsys):
    root = make_folder(tmp_path / "ds", {"a": 10, "b": 10})
    a_file = tmp_path / "photo.jpg"
    a_file.write_bytes(b"x")
    full = tmp_path / "full"
    full.mkdir()
    (full / "old.txt").write_text("")
    for copy, reason in ((a_file, "is a file"), (a_file / "sub", "Not a directory"), (full, "is not empty")):
        assert_user_error(capsys, main(["split", f"folder:{root}", "--copy", str(copy)]), reason)
        assert not (root / MANIFEST_NAME).exists()
    assert not (a_file.parent / "sub").exists() and [p.name for p in full.iterdir()] == ["old.txt"]


@pytest.mark.parametrize("flags, part", [(["--val", "0"], "val"), (["--test", "0"], "test"),
                                         (["--val", "0.01"], "val")])  # 1% of 20 images rounds to none
def test_split_refuses_an_empty_val_or_test_part(tmp_path, capsys, flags, part):
    root = make_folder(tmp_path / "ds", {"a": 10, "b": 10})
    assert_user_error(capsys, main(["split", f"folder:{root}", *flags]), f"no {part} images",
                      "training needs train, val and test images", f"--{part}")
    assert not (root / MANIFEST_NAME).exists()


# ----------------------------------------------------------------------------- port

def test_port_checks_out_before_downloading(monkeypatch, tmp_path, capsys):
    def no_download(name):
        raise AssertionError("the weights were downloaded before --out was checked")

    monkeypatch.setattr(porting, "download_torchvision_state_dict", no_download)
    assert_user_error(capsys, main(["port", "vgg16", "--out", str(tmp_path / "absent" / "w.safetensors")]),
                      f"the folder {tmp_path / 'absent'} does not exist")
    assert_user_error(capsys, main(["port", "vgg16", "--out", str(tmp_path)]), "is a directory")
    assert not (tmp_path / "absent").exists()


# ----------------------------------------------------------------------------- evaluate --tta

@pytest.mark.parametrize("flags, message", [
    (["--tta", "10crop", "--scale", "2"], "--scale is used by --tta none and flip only, not by --tta 10crop"),
    (["--tta", "multiscale", "--scale", "1"], "--scale is used by --tta none and flip only"),
    (["--tta", "none", "--scales", "2"], "--scales is used by --tta multiscale only, not by --tta none"),
    (["--tta", "flip", "--scales", "1,2"], "--scales is used by --tta multiscale only"),
])
def test_evaluate_refuses_scale_options_the_mode_ignores(run, capsys, flags, message):
    assert_user_error(capsys, main(["evaluate", str(run), "--device", "cpu", *flags]), message)


def test_scale_options_stay_optional_and_name_the_folder():
    from classicnets.cli.evaluate import default_folder_name

    args = build_parser().parse_args(["evaluate", "RUN", "--tta", "flip"])
    assert args.scale is None and args.scales is None and default_folder_name(args) == "eval-test-flip"
    args = build_parser().parse_args(["evaluate", "RUN", "--scale", "1"])  # the default, given
    assert default_folder_name(args) == "eval-test-none"


# ----------------------------------------------------------------------------- help

def test_train_help_shows_the_config_defaults(capsys):
    from classicnets.engine import TrainConfig

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    defaults = TrainConfig()
    for flag, value in [("--epochs EPOCHS", defaults.epochs), ("--image-size PX", defaults.image_size),
                        ("--seed SEED", defaults.seed), ("--val-size N", defaults.val_size)]:
        assert f"{flag} default: {value}" in text
    from classicnets.engine.config import PHOTO_DEFAULTS

    assert f"(never scaled with the global batch) (default: {defaults.lr}; photos: {PHOTO_DEFAULTS['lr']:g})" in text
    assert "clip the gradient norm (default: off)" in text
    assert "(default: cosine; photos: onecycle)" in text and "(default: 128)" in text
    # flags stay None, so a recipe's value is not overridden by a default nobody typed
    args = build_parser().parse_args(["train", "--model", "vgg11"])
    assert args.lr is None and args.epochs is None and args.grad_clip is None


# ----------------------------------------------------------------------------- a full disk

def fail_with(code: int):
    def run(args):
        raise OSError(code, os.strerror(code), "/somewhere/out.png")
    return run


def test_a_full_disk_is_one_sentence_and_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(models_command, "run", fail_with(errno.ENOSPC))
    assert main(["models"]) == 2
    assert capsys.readouterr().err == ("classicnets models: error: the disk is full (No space left on device); "
                                       "free some space and run the command again.\n")


def test_other_os_errors_keep_their_traceback(monkeypatch):
    monkeypatch.setattr(models_command, "run", fail_with(errno.EIO))  # a bug or a broken disk: show where
    with pytest.raises(OSError, match="Input/output error"):
        main(["models"])
