"""``classicnets stats``: exact per-channel mean and std of a dataset's training split."""

from __future__ import annotations

import argparse

from .common import bounded_image_size, bounded_seed, non_empty, positive_int

EPILOG = """\
DATASET is cats-vs-dogs, folder:PATH, cifar10 or stl10. The training split is the
manifest's (--manifest, else ROOT/classicnets-split.csv), else the default one that
training uses; for cifar10 and stl10 it is the training file less the validation part
that --seed and --val-size cut (as training with the same settings does). Pixels are
counted in exact integer histograms and reduced in float64; the std is the population
std. Values are on [0, 1], as training normalises.

Every image is checked first; bad files (empty, truncated, corrupt, not images, too
large to decode safely) stop the command with a list of them, unless --skip-bad.

exit status: 0 done; 2 bad input (unknown dataset, missing data, bad images).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "stats", help="exact per-channel mean and std of a dataset's training split",
        description="Compute the exact per-channel mean and standard deviation of the training split, "
                    "streaming over the images.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=non_empty, metavar="DATASET", help="cats-vs-dogs, folder:PATH, cifar10 or stl10")
    p.add_argument("--data-dir", type=non_empty, metavar="DIR",
                   help="data root (default: $CLASSICNETS_DATA, else ./data)")
    p.add_argument("--manifest", type=non_empty, metavar="CSV", help="split manifest written by classicnets split")
    p.add_argument("--image-size", type=bounded_image_size, metavar="PX",
                   help="count the pixels at this training size (shorter side, centre square); "
                        "default: every file at its own size")
    p.add_argument("--seed", type=bounded_seed, metavar="N",
                   help="cifar10/stl10: the seed of the training run whose split to measure (default 0)")
    p.add_argument("--val-size", type=positive_int, metavar="N",
                   help="cifar10/stl10: the validation images that run held out (default 6000, "
                        "at most a tenth of the training file)")
    p.add_argument("--workers", type=positive_int, default=2, metavar="N", help="decoding threads (default 2)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--skip-bad", action="store_true", help="leave unreadable images out instead of stopping")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="never download cifar10/stl10")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..data import unused_settings
    from ..data.stats import training_split_mean_std
    from ..errors import UserError

    split = {name: value for name, value in (("seed", args.seed), ("val_size", args.val_size)) if value is not None}
    if split and unused_settings(args.dataset, {"val_size": 1}):  # its split does not hold out a val part
        raise UserError(f"--seed and --val-size choose the part fashion-mnist holds out and the split of cifar10 "
                        f"and stl10 only; {args.dataset}'s split comes from its manifest.")
    result = training_split_mean_std(args.dataset, args.data_dir, manifest=args.manifest,
                                     image_size=args.image_size, workers=args.workers,
                                     progress=sys.stderr.isatty(), download=args.download,
                                     skip_bad=args.skip_bad, **split)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.dataset}: {result['images']:,} training images"
          + (f" at {args.image_size} px" if args.image_size else ""))
    print("mean " + " ".join(f"{v:.6f}" for v in result["mean"]))
    print("std  " + " ".join(f"{v:.6f}" for v in result["std"]))
    return 0
