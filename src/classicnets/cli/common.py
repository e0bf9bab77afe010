"""Argument types and argument groups shared by the subcommands. argparse turns their
errors into a one-line usage message and exit status 2."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Iterable

from ..device import DEVICES  # noqa: F401  (the --device choices of every command)
from ..limits import MAX_BATCH_SIZE, MAX_IMAGE_SIZE, MAX_SEED  # training's config checks the same


def positive_int(text: str) -> int:
    value = _parse(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def auto_switch(text: str) -> bool | str:
    """auto, true or false (also on/off), for settings the machine may decide."""
    from ..engine.config import AUTO_SWITCH_WORDS

    word = text.strip().lower()
    if word not in AUTO_SWITCH_WORDS:
        raise argparse.ArgumentTypeError(f"must be auto, true or false, got {text}")
    return AUTO_SWITCH_WORDS[word]


def non_negative_int(text: str) -> int:
    value = _parse(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _parse(text, float, "a number")
    if not (value > 0 and math.isfinite(value)):  # `not >` also rejects nan
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def fraction(text: str) -> float:
    value = _parse(text, float, "a number")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def bounded_image_size(text: str) -> int:
    return _at_most(positive_int(text), MAX_IMAGE_SIZE, "px")


def bounded_batch_size(text: str) -> int:
    return _at_most(positive_int(text), MAX_BATCH_SIZE, "images")


def bounded_seed(text: str) -> int:
    return _at_most(non_negative_int(text), MAX_SEED, "(2**32 - 1)")


def non_empty(text: str) -> str:
    """A path or a name: an empty (or all-blank) string would otherwise read as "not given",
    as the current folder, or as a stray folder named by spaces. Recipes refuse the same."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _at_most(value: int, limit: int, unit: str) -> int:
    if value > limit:
        raise argparse.ArgumentTypeError(f"must be at most {limit:,} {unit}, got {value}")
    return value


def _parse(text: str, kind: type, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def add_run_data_arguments(p: argparse.ArgumentParser, dataset_help: str) -> None:
    """The inputs of commands that run a trained run over one of its data splits
    (``evaluate``, ``embed``): the run, the split, where the data is, batch size, device."""
    p.add_argument("run_dir", type=non_empty, metavar="RUN_DIR", help="run directory written by classicnets train")
    p.add_argument("--split", choices=("test", "val", "all"), default="test",
                   help="default test; all = every image of the dataset (its train, val and test parts), e.g. "
                        "another folder of photos scored whole with --dataset and --data-dir")
    p.add_argument("--dataset", type=non_empty, help=dataset_help)
    p.add_argument("--data-dir", type=non_empty, metavar="DIR",
                   help="data root (default: the run's, else $CLASSICNETS_DATA)")
    p.add_argument("--batch-size", type=bounded_batch_size, default=128, metavar="N", help="default 128")
    p.add_argument("--device", choices=DEVICES, default="auto", help="default auto")
    p.add_argument("--map-classes-by-position", action="store_true",
                   help="with --dataset: take the dataset's i-th class for the run's i-th even where "
                        "their names differ (the output lists the pairs)")


# ----------------------------------------------------------------------------- outputs that replace nothing

def weights_file(source: str | os.PathLike) -> Path:
    """The weights a run directory or a .safetensors SOURCE stands for."""
    from ..engine.checkpoint import BEST_WEIGHTS

    source = Path(source)
    return source / BEST_WEIGHTS if source.is_dir() else source


def run_own_files(folder: str | os.PathLike) -> dict[Path, str]:
    """The files a run writes in ``folder``, described, when ``folder`` is a run directory
    (it holds a config, best weights or a checkpoint); {} for any other folder. Those not
    written yet are included: the run may still write them."""
    from ..engine.checkpoint import BEST_WEIGHTS, LAST_CHECKPOINT
    from ..engine.rundir import CONFIG_FILE, RUN_FILES

    folder = Path(folder)
    if not any((folder / marker).is_file() for marker in (CONFIG_FILE, BEST_WEIGHTS, LAST_CHECKPOINT)):
        return {}
    return {folder / name: f"the run's own {name} in {folder}" for name in RUN_FILES}


def kept_inputs(inputs: Iterable[str | os.PathLike]) -> dict[Path, str]:
    return {Path(path): f"the input {path}" for path in inputs}


def safe_output_file(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), *,
                     option: str = "--out", figure: bool = False) -> Path:
    """``out``, refused (UserError) when writing it would replace one of ``inputs``, a file of
    the run directory it lies in, or an image (a figure classicnets drew may be redrawn when
    ``figure``)."""
    from ..files import refuse_overwrite

    out = Path(out)
    # A run's file is named as such; the folder a link points into counts as well.
    keep = {**kept_inputs(inputs), **run_own_files(out.parent), **run_own_files(out.resolve().parent)}
    return refuse_overwrite(out, keep, option=option, figure=figure)


def safe_output_folder(folder: str | os.PathLike, names: Iterable[str], inputs: Iterable[str | os.PathLike] = (), *,
                       option: str = "--out", advice: str = "choose another folder") -> Path:
    """``folder``, refused when writing any of ``names`` into it would replace one of
    ``inputs``, a run's own file (``folder`` being a run directory) or an image."""
    from ..files import refuse_overwrite_in

    folder = Path(folder)
    keep = {**kept_inputs(inputs), **run_own_files(folder)}
    return refuse_overwrite_in(folder, names, keep, option=option, advice=advice)
