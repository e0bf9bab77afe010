"""``classicnets zoo``: the classic CNNs side by side, a markdown table and an accuracy chart."""

from __future__ import annotations

import argparse

from .common import bounded_batch_size, non_empty, non_negative_int, positive_int, safe_output_file

EPILOG = """\
columns: family, model, year and paper; the native input; parameters, multiply-adds and
activation memory of one image there (computed from the network, as `summary` does); the
receptive field of the last feature map; CPU latency of one image and throughput of a batch,
measured now (the median of --repeats runs after --warmup runs); the ImageNet top-1 that
torchvision publishes for the weights that port into the model, with its source.

one model per family by default: the registry's representative, else the middle one by
parameters of the family's models with published ImageNet weights.

outputs: the markdown table on stdout, or in --out; the chart (top-1 against multiply-adds,
log scale, marker area by parameters) in --chart.

exit status: 0 done; 2 bad input (unwritable output, an output that would replace an image,
a run's own file, or the other output).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "zoo", help="the classic CNNs side by side: size, cost, speed, published accuracy, chart",
        description="Compare the registered model families: year and paper, parameters, multiply-adds, "
                    "activation memory and final receptive field at each model's native input, CPU speed "
                    "measured on this machine, and torchvision's published ImageNet top-1.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--all", action="store_true", help="every registered model, not one per family")
    p.add_argument("--out", type=non_empty, metavar="FILE", help="write the markdown here (default: stdout)")
    p.add_argument("--chart", type=non_empty, metavar="FILE.png",
                   help="draw the accuracy against multiply-adds chart here")
    p.add_argument("--no-bench", action="store_true", help="skip the CPU speed measurements")
    p.add_argument("--repeats", type=positive_int, default=5, metavar="N",
                   help="timed runs per measurement; the median is reported (default 5)")
    p.add_argument("--warmup", type=non_negative_int, default=2, metavar="N",
                   help="untimed runs first (default 2)")
    p.add_argument("--batch-size", type=bounded_batch_size, default=32, metavar="N",
                   help="batch for the throughput (default 32)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    from ..analysis.figures import output_file
    from ..analysis.zoo import BenchSettings, collect_zoo, format_zoo, write_zoo_chart, zoo_models
    from ..errors import UserError
    from ..files import atomic_write_text, same_path

    # Every output is checked before minutes of timing are spent.
    out = chart = None
    if args.out is not None:
        out = output_file(safe_output_file(args.out))
    if args.chart is not None:
        chart = output_file(safe_output_file(args.chart, option="--chart", figure=True))
    if out is not None and chart is not None and same_path(out, chart):
        raise UserError(f"--out and --chart name the same file {args.out}; give two paths.")

    bench = None if args.no_bench else BenchSettings(repeats=args.repeats, warmup=args.warmup,
                                                     batch_size=args.batch_size)
    rows = collect_zoo(zoo_models(all_models=args.all), bench,
                       progress=lambda message: print(message, file=sys.stderr, flush=True))
    link = None
    if chart is not None:
        write_zoo_chart(chart, rows)
        # Beside the markdown file, the link is relative to it; on stdout it is the path given.
        link = str(chart) if out is None else os.path.relpath(chart.resolve(), out.resolve().parent)
        link = link.replace(os.sep, "/")
    text = format_zoo(rows, bench, chart_link=link, all_models=args.all)
    if out is None:
        print(text, end="")
    else:
        atomic_write_text(out, text)
    written = [str(p) for p in (out, chart) if p is not None]
    if written:
        print(f"wrote {' and '.join(written)}", file=sys.stderr if out is None else sys.stdout)
    return 0
