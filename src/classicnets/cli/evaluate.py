"""``classicnets evaluate``: accuracy, per-class scores, calibration and mistakes of a run."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..limits import MAX_IMAGE_SIZE
from .common import (add_run_data_arguments, non_empty, positive_float, positive_int, safe_output_folder,
                     weights_file)

if TYPE_CHECKING:
    from ..analysis.tta import TTAConfig

EPILOG = """\
test-time methods (--tta), as in the papers; soft-max posteriors are averaged over views:
  none        the whole image at the run's image size (times --scale)
  flip        the image and its mirror image
  10crop      the image rescaled by 256/224, its four corner crops and centre crop at the
              run's image size, and their mirror images
  multiscale  the whole image at --scales times the run's size (default 0.875,1,1.125: the
              VGG paper's Q = S-32, S, S+32 for S = 256) and the mirror images
Views the model never saw in training lower its accuracy (a model trained without flips or
crops loses under flip and 10crop): compare on --split val before using one on test.

--dense evaluates as the VGG paper does: the FC layers become convolutions (VGG 7x7 and
1x1, AlexNet 6x6 and 1x1), slid over the feature map of the whole image, and the class
score map is averaged. It differs from the plain network only where the feature map is
larger than the window the first FC layer reads (VGG: test images over 224 px: use --scale
or multiscale); smaller maps use the network's own pooled head. GoogLeNet, ResNet and
Inception v3 are dense already (global average pooling before one linear layer), so
--dense changes nothing for them; LeNet-5 has no dense form and is refused.

outputs in --out (default RUN_DIR/eval-SPLIT-TTA[-dense][-scaleX][-DATASET][-firstN], named
after every setting that changes the numbers): evaluation.json (top-1, top-5, per-class
precision/recall/F1, expected calibration error, confusion matrix, most confident mistakes),
confusion_matrix.png, mistakes.png, reliability.png. An --out that is a run directory is
refused (its confusion_matrix.png is the run's own), as is one whose files are images
that classicnets did not draw.

--dataset must have the run's classes, by name and in order; --map-classes-by-position
scores another dataset's i-th class as the run's i-th, and says so on the screen, in the
figures' titles and in evaluation.json ("classes_mapped_by_position").

exit status: 0 done; 2 bad input (missing run or data, bad option, class names that differ
from the run's, posteriors that are NaN, an output that would replace a run's own file or
an image).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="accuracy, per-class scores, calibration and mistakes of a trained run",
        description="Evaluate a trained run on its test or validation split, or on every image of a "
                    "dataset (--split all), with the papers' test-time methods (flip, 10-crop, multi-scale, dense).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_data_arguments(p, dataset_help="evaluate on this dataset instead of the run's (same class names, "
                                           "same order)")
    p.add_argument("--tta", choices=("none", "flip", "10crop", "multiscale"), default="none",
                   help="test-time augmentation (default none)")
    p.add_argument("--dense", action="store_true",
                   help="FC layers as convolutions over the whole image (VGG, AlexNet)")
    p.add_argument("--scale", type=positive_float, metavar="X",
                   help="none/flip: test image side = X times the run's image size (default 1)")
    p.add_argument("--scales", type=_scale_list, metavar="X,Y,...",
                   help="multiscale: relative test scales (default 0.875,1,1.125)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the first N images of the split")
    p.add_argument("--mistakes", type=positive_int, default=24, metavar="K",
                   help="most confident mistakes to show (default 24)")
    p.add_argument("--out", type=non_empty, metavar="DIR", help="output directory")
    p.set_defaults(run=run)


def default_folder_name(args: argparse.Namespace) -> str:
    """``eval-SPLIT-TTA[-dense]``, plus every setting that changes the numbers, so that two
    different evaluations of one run never overwrite each other."""
    from ..data.photos import dataset_slug

    parts = ["eval", args.split, args.tta] + (["dense"] if args.dense else [])
    if args.scale not in (None, 1.0):
        parts.append(f"scale{args.scale:g}")
    if args.scales:
        parts.append("scales" + "_".join(f"{s:g}" for s in args.scales))
    if args.dataset:
        parts.append(dataset_slug(args.dataset))
    if args.limit:
        parts.append(f"first{args.limit}")
    return "-".join(parts)


def results_folder(args: argparse.Namespace) -> Path:
    """--out, else the default folder in the run, checked to replace none of the run's own
    files (a run directory's confusion_matrix.png is the test split's, of the whole run), the
    weights or an image. Nothing is created yet."""
    from ..analysis.evaluation_report import OUTPUT_FILES
    from ..analysis.run_data import run_home

    default = run_home(args.run_dir) / default_folder_name(args)
    return safe_output_folder(args.out or default, OUTPUT_FILES, [weights_file(args.run_dir)],
                              advice=f"leave out --out to write into {default}, or give another folder")


def _scale_list(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}") from None
    if not scales or not all(s > 0 and math.isfinite(s) for s in scales):  # `not >` also rejects nan
        raise argparse.ArgumentTypeError(f"scales must be positive finite numbers, got {text!r}")
    return scales


# The --tta modes that read each scale option (see analysis/tta.py TTAConfig.views).
SCALE_OPTION_MODES = {"scale": ("none", "flip"), "scales": ("multiscale",)}


def check_scale_options(args: argparse.Namespace) -> None:
    """Refuse a scale option the chosen --tta would ignore: the numbers would not change,
    yet the output folder would be named after it."""
    from ..errors import UserError

    for option, modes in SCALE_OPTION_MODES.items():
        if getattr(args, option) is not None and args.tta not in modes:
            raise UserError(f"--{option} is used by --tta {' and '.join(modes)} only, not by --tta {args.tta}.")


def check_test_sizes(tta: TTAConfig) -> None:
    """Refuse test images over MAX_IMAGE_SIZE px a side before any is made: a scale like
    1e6 would otherwise end in an allocator error."""
    from ..analysis.tta import scaled_size
    from ..errors import UserError

    if tta.mode == "10crop":
        return  # its rescale is fixed, 256/224 of the run's size, not chosen by an option
    option, scales = ("--scales", tta.scales) if tta.mode == "multiscale" else ("--scale", (tta.scale,))
    for scale in scales:
        size = scaled_size(tta.image_size, scale)
        if size > MAX_IMAGE_SIZE:
            raise UserError(f"{option} {scale:g} makes the test images {size:,} px a side, over the limit of "
                            f"{MAX_IMAGE_SIZE:,} px; for this {tta.image_size} px run, scales up to "
                            f"{MAX_IMAGE_SIZE / tta.image_size:.4g} fit.")


def dense_note(metadata: dict, model, tta: TTAConfig, mode: str, window: int) -> str:
    """Why --dense changes nothing at this size, and which option makes it count."""
    from ..analysis.dense import smallest_dense_size

    size = tta.input_size()
    note = (f"note: at {size} px the last feature map of {metadata['model']} is at most {window}x{window}, so "
            f"dense evaluation gives the plain network's numbers")
    needed = smallest_dense_size(model, size)
    if needed is None:
        return note + "."
    scale = f"{needed / int(metadata['image_size']):.3g}"
    how = (f"--scale {scale} or more" if mode in SCALE_OPTION_MODES["scale"]
           else f"--scales of {scale} or more" if mode == "multiscale"
           else f"--tta none or flip with --scale {scale} or more")  # 10crop's size is fixed
    return (f"{note}; test images of {needed} px or more make a difference ({how} for this "
            f"{metadata['image_size']} px run).")


def run(args: argparse.Namespace) -> int:
    from ..analysis.dense import dense_kind, dense_window, feature_size
    from ..analysis.evaluation_report import format_report, run_evaluation, write_evaluation
    from ..analysis.figures import output_dir
    from ..analysis.run_data import load_run_split
    from ..analysis.tta import VGG_MULTISCALE, TTAConfig
    from ..engine.checkpoint import load_run
    from ..device import resolve_device
    from ..errors import UserError

    check_scale_options(args)
    out_dir = results_folder(args)
    device = resolve_device(args.device)
    weights = str(weights_file(args.run_dir))
    model, metadata = load_run(args.run_dir, device=device)
    tta = TTAConfig(args.tta, image_size=int(metadata["image_size"]), scale=args.scale or 1.0,
                    scales=args.scales or VGG_MULTISCALE)
    check_test_sizes(tta)
    kind = dense_kind(model) if args.dense else None
    if args.dense and kind is None:
        raise UserError(f"{metadata['model']} has no fully-connected head over a feature map to turn into "
                        f"convolutions, so --dense does not apply to it; leave it out.")
    if kind == "global-pool":
        print(f"note: {metadata['model']} is dense already (global average pooling before its one linear layer), "
              f"so --dense gives the same numbers as without it.")
    elif kind == "fully-connected" and feature_size(model, tta.input_size()) <= dense_window(model):
        print(dense_note(metadata, model, tta, args.tta, dense_window(model)))
    split = load_run_split(args.run_dir, metadata, args.split, image_size=tta.input_size(), device=device,
                           batch_size=args.batch_size, dataset=args.dataset, data_dir=args.data_dir,
                           limit=args.limit, map_classes_by_position=args.map_classes_by_position)
    output_dir(out_dir)
    print(f"evaluating {metadata['model']} on {split.num_images:,} {split.dataset} {args.split} images: "
          f"{tta.describe()}{', dense' if args.dense else ''}")
    if split.class_mapping is not None:
        print(split.mapping_note())
    evaluation = run_evaluation(model, split.batches, tta, dense=args.dense, num_mistakes=args.mistakes,
                                weights=weights, data=f"the {split.dataset} {args.split} images")
    mapped = " (classes mapped by position)" if split.class_mapping is not None else ""
    title = f"{metadata['model']} on {split.dataset} {args.split}{mapped}"
    report, paths = write_evaluation(out_dir, evaluation, split.class_names, split.mean, split.std, title,
                                     class_mapping=split.class_mapping)
    print(format_report(report))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0
