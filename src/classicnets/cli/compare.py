"""``classicnets compare``: a markdown report comparing finished runs, with charts."""

from __future__ import annotations

import argparse

from .common import (bounded_batch_size, non_empty, non_negative_int, positive_int, safe_output_file,
                     safe_output_folder, weights_file)

EPILOG = """\
rows: model, dataset, input; parameters and multiply-adds per image (at the run's input and
at 3x224x224 with 1000 classes, as papers quote them); parameter memory, forward activation
memory and memory saved for backward at --batch-size; training throughput recorded by the
run and measured now (SGD steps on random data at --batch-size) and inference latency of
one image, on the CPU and on the GPU when there is one; best validation and test accuracy,
best epoch, training wall time.

outputs: --out (default compare.md) and its charts in OUT_STEM_charts/ beside it:
size.png, memory.png, speed.png, accuracy.png.

exit status: 0 done; 2 bad input (missing run directory, unwritable output, an output that
would replace a run's own file, an input or an image).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare", help="markdown report comparing runs: size, memory, speed, accuracy",
        description="Compare trained runs side by side: parameters, MACs, memory, speed and accuracy, "
                    "as a markdown table with PNG charts.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", type=non_empty, metavar="RUN_DIR", nargs="+",
                   help="run directories written by classicnets train")
    p.add_argument("--out", type=non_empty, default="compare.md", metavar="FILE",
                   help="markdown report (default compare.md)")
    p.add_argument("--batch-size", type=bounded_batch_size, default=16, metavar="N",
                   help="batch for memory figures and training throughput (default 16)")
    p.add_argument("--steps", type=positive_int, default=3, metavar="N",
                   help="timed repetitions; the median is reported (default 3)")
    p.add_argument("--warmup", type=non_negative_int, default=1, metavar="N",
                   help="untimed repetitions first (default 1)")
    p.add_argument("--no-bench", action="store_true", help="skip the speed measurements")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..analysis.compare import (CHARTS, BenchSettings, chart_dir_for, check_report_paths, collect_run_stats,
                                    unique_labels, write_compare_report)
    from ..errors import UserError

    missing = [d for d in args.run_dirs if not Path(d).exists()]
    if missing:
        raise UserError(f"run directory {missing[0]} does not exist.")
    inputs = [weights_file(d) for d in args.run_dirs]
    safe_output_file(args.out, inputs)  # neither the report nor its charts may replace what is kept
    safe_output_folder(chart_dir_for(args.out), [f"{chart}.png" for chart in CHARTS], inputs)
    check_report_paths(args.out)  # a bad --out must not waste the measurements
    bench = None if args.no_bench else BenchSettings(steps=args.steps, warmup=args.warmup)
    stats = []
    for run_dir, label in zip(args.run_dirs, unique_labels(args.run_dirs)):
        where = "" if bench is None else f", timing on {', '.join(bench.resolved_devices())}"
        print(f"measuring {label}{where} ...", flush=True)
        stats.append(collect_run_stats(run_dir, batch_size=args.batch_size, bench=bench, label=label))
    paths = write_compare_report(args.out, stats)
    print(f"wrote {paths['report']} and {len(paths) - 1} charts in {paths['size'].parent}")
    return 0
