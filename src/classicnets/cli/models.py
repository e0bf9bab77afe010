"""``classicnets models [PATTERN] [--markdown]``: the registered models, their size and cost."""

from __future__ import annotations

import argparse

from .common import non_empty


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the registered models with their parameters and multiply-adds",
        description="List the registered models: family, paper configuration, parameters "
                    "(3 input channels, 1000 classes; 'inference params' leaves out layers that "
                    "run only in training, such as GoogLeNet's auxiliary heads) and multiply-adds "
                    "for one 224x224 image (at its native size, marked, for a network that takes one "
                    "size only), measured on the meta device, where nothing is allocated.",
    )
    p.add_argument("pattern", type=non_empty, nargs="?", metavar="PATTERN",
                   help="shell-style filter on the names, e.g. 'vgg*_bn' or 'googlenet*'")
    p.add_argument("--markdown", action="store_true", help="print a markdown table (for the README)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis.catalog import describe_models, format_model_table

    print(format_model_table(describe_models(args.pattern), markdown=args.markdown))
    return 0
