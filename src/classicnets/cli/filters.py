"""``classicnets filters``: the first convolution's learned kernels."""

from __future__ import annotations

import argparse

from .common import non_empty, safe_output_file, weights_file


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "filters", help="draw the first-layer filters of a run",
        description="Draw the kernels of the first convolution (VGG: 64 3x3, GoogLeNet: 64 7x7), each "
                    "stretched to its own range; colour for RGB networks, grey otherwise.")
    p.add_argument("run_dir", type=non_empty, metavar="RUN_DIR",
                   help="run directory (or .safetensors) written by classicnets train")
    p.add_argument("--out", type=non_empty, metavar="FILE", help="PNG to write (default RUN_DIR/filters.png)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis.activations import plot_filters
    from ..analysis.run_data import run_home
    from ..engine.checkpoint import load_run

    model, metadata = load_run(args.run_dir)
    out = safe_output_file(args.out or run_home(args.run_dir) / "filters.png", [weights_file(args.run_dir)],
                           figure=True)
    path = plot_filters(out, model, metadata["model"])
    print(f"wrote {path}")
    return 0
