"""``classicnets`` entry point: builds the parser from the subcommand modules.

Each name in :data:`COMMANDS` is a module of this package with two functions:
``add_parser(subparsers)``, which registers the subcommand and its flags, and
``run(args) -> int``. Modules import torch and the library inside ``run`` so that
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys

from .. import __version__
from ..errors import UserError, disk_full_cause

COMMANDS = ("models", "summary", "port", "train", "split", "stats", "predict", "evaluate", "embed", "activations",
            "filters", "compare", "export", "zoo", "report", "lr_find")


def build_parser() -> argparse.ArgumentParser:
    # Options must be spelled out: argparse would otherwise take `--npro` for --nproc, and
    # `train --nproc` hands the rest of its argv to torchrun, which reads it its own way.
    parser = argparse.ArgumentParser(
        prog="classicnets",
        description="VGG and GoogLeNet rebuilt from their papers: inspect, train, evaluate.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"classicnets {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                       parser_class=functools.partial(argparse.ArgumentParser, allow_abbrev=False))
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv  # what was parsed: `train --nproc` hands it on to torchrun
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args) or 0)
    except UserError as error:
        print(f"classicnets {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"classicnets {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        disk_full = disk_full_cause(error)
        if disk_full is None:
            raise
        print(f"classicnets {args.command}: error: the disk is full ({disk_full.strerror}); "
              f"free some space and run the command again.", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
