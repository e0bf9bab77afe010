"""Argument types and argument groups shared by the subcommands. argparse turns their
errors into a one-line usage message and exit status 2."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = _parse(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _parse(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _parse(text, float, "a number")
    if not value > 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def fraction(text: str) -> float:
    value = _parse(text, float, "a number")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _parse(text: str, kind: type, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def add_run_data_arguments(p: argparse.ArgumentParser, dataset_help: str) -> None:
    """The inputs of commands that run a trained run over one of its data splits
    (``evaluate``, ``embed``): the run, the split, where the data is, batch size, device."""
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by classicnets train")
    p.add_argument("--split", choices=("test", "val"), default="test", help="default test")
    p.add_argument("--dataset", help=dataset_help)
    p.add_argument("--data-dir", metavar="DIR", help="data root (default: the run's, else $CLASSICNETS_DATA)")
    p.add_argument("--batch-size", type=positive_int, default=128, metavar="N", help="default 128")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto")
