"""``classicnets report``: one self-contained HTML page per run."""

from __future__ import annotations

import argparse

from .common import (add_run_data_arguments, bounded_seed, non_empty, non_negative_int, positive_int,
                     safe_output_file, weights_file)

EPILOG = """\
the page (default RUN_DIR/report.html; one file, every image embedded, so it opens from disk
with no server and no network and can be mailed as it is):
  configuration      config.yaml as the run saved it
  training curves    loss and accuracy per epoch, from metrics.csv (the run's curves.png without it)
  test accuracy      overall and per class, from summary.json
  confusion matrix   the run's confusion_matrix.png (else one of the images scored here)
  mistakes           the most confident wrong predictions among the first --limit images
  Grad-CAM           --cam-per-class images of each class, with the map of the predicted class
  t-SNE              penultimate features of the first --tsne-points images
  model summary      the summary table (classicnets summary) at the run's input size
A section whose inputs are missing (no summary.json before the run has tested, no data at
--data-dir) says so in the page; the others are still drawn. Only the first --limit images
of the split are run through the network, so a large run takes as long as a small one
(under a minute for a Fashion-MNIST run on two CPU cores at the defaults).

--out may not name one of the run's own files, the weights, or an image.

exit status: 0 written; 2 bad input (no run directory, bad option, an --out that would
replace a run's own file or an image).
"""


# The defaults of analysis/report.py's ReportOptions (tests/test_report.py checks they agree);
# repeated here because importing the analysis package loads torch, and --help stays fast.
DEFAULT_LIMIT = 1000
DEFAULT_MISTAKES = 24
DEFAULT_CAM_PER_CLASS = 2
DEFAULT_TSNE_POINTS = 500


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="one self-contained HTML page per run: config, curves, accuracy, galleries, t-SNE",
        description="Write one HTML page about a run: its configuration, training curves, test accuracy "
                    "overall and per class, confusion matrix, a gallery of the most confident mistakes, "
                    "Grad-CAM images per class, a t-SNE map of the penultimate features and the model's "
                    "summary table.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_data_arguments(p, dataset_help="draw the galleries from this dataset instead of the run's "
                                           "(same class names, same order)")
    p.add_argument("--limit", type=positive_int, default=DEFAULT_LIMIT, metavar="N",
                   help=f"images of the split scored for the mistakes and searched for Grad-CAM examples "
                        f"(default {DEFAULT_LIMIT})")
    p.add_argument("--mistakes", type=positive_int, default=DEFAULT_MISTAKES, metavar="K",
                   help=f"most confident mistakes shown (default {DEFAULT_MISTAKES})")
    p.add_argument("--cam-per-class", type=non_negative_int, default=DEFAULT_CAM_PER_CLASS, metavar="K",
                   help=f"Grad-CAM images per class, 0 for none (default {DEFAULT_CAM_PER_CLASS})")
    p.add_argument("--tsne-points", type=positive_int, default=DEFAULT_TSNE_POINTS, metavar="N",
                   help=f"images in the t-SNE map (default {DEFAULT_TSNE_POINTS})")
    p.add_argument("--seed", type=bounded_seed, default=0, help="for t-SNE (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--out", type=non_empty, metavar="FILE", help="the HTML file (default RUN_DIR/report.html)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis.figures import output_file
    from ..analysis.report import DEFAULT_FILE, ReportOptions, build_report
    from ..analysis.run_data import run_home
    from ..device import resolve_device
    from ..errors import UserError
    from ..files import atomic_write_bytes

    home = run_home(args.run_dir)
    if not home.is_dir():
        raise UserError(f"{args.run_dir} does not exist; give a run directory written by classicnets train.")
    inputs = [weights_file(args.run_dir), home / "config.yaml", home / "metrics.csv", home / "summary.json"]
    out = safe_output_file(args.out or home / DEFAULT_FILE, inputs)
    output_file(out)  # not a folder, and its folder writable: checked before the work
    options = ReportOptions(split=args.split, dataset=args.dataset, data_dir=args.data_dir,
                            device=resolve_device(args.device), batch_size=args.batch_size, limit=args.limit,
                            cam_per_class=args.cam_per_class, tsne_points=args.tsne_points,
                            mistakes=args.mistakes, map_classes_by_position=args.map_classes_by_position,
                            seed=args.seed, progress=not args.quiet)
    html = build_report(args.run_dir, options)
    atomic_write_bytes(out, html.encode("utf-8"))
    print(f"wrote {out} ({len(html.encode('utf-8')) / 1024:,.0f} KiB)")
    return 0
