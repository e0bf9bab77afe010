"""``classicnets lr-find``: the learning-rate range test for a model and dataset."""

from __future__ import annotations

import argparse

from .common import DEVICES, bounded_batch_size, bounded_image_size, bounded_seed, non_empty, positive_float, positive_int

EPILOG = """\
The model, data and optimizer are built as `classicnets train` builds them from the same
recipe and flags; then the learning rate grows exponentially from --start-lr to --end-lr
over --steps steps (cycling through the training split) while the smoothed training loss
is recorded. The test stops early once the loss is 4 times its minimum, 20% above where it
started, or not finite.
Suggested: a tenth of the rate at the loss minimum (past the steepest fall, safely before
the explosion); give it to train as --lr (the peak rate of its schedule).

outputs: the plot (loss against lr, log scale) in --out; the suggestion on stdout. No run
directory is created or changed.

exit status: 0 done; 2 bad input (as train's, an unwritable --out, or a loss that explodes
at once: start lower).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "lr-find", help="learning-rate range test: loss against an exponentially growing lr, and a suggestion",
        description="Find a learning rate for a model and dataset with the range test (Smith, 2017).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", type=non_empty, metavar="YAML", help="a training recipe (its lr is what is searched)")
    p.add_argument("--model", type=non_empty, help="model name (see `classicnets models`)")
    p.add_argument("--dataset", type=non_empty, help="dataset name (default fashion-mnist)")
    p.add_argument("--data-dir", type=non_empty, metavar="DIR", help="data root (default: $CLASSICNETS_DATA, else ./data)")
    p.add_argument("--image-size", type=bounded_image_size, metavar="PX")
    p.add_argument("--batch-size", type=bounded_batch_size)
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"))
    p.add_argument("--subset", type=positive_int, metavar="N", help="a stratified N training images")
    p.add_argument("--seed", type=bounded_seed)
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--start-lr", type=positive_float, default=1e-7, metavar="X", help="default 1e-7")
    p.add_argument("--end-lr", type=positive_float, default=10.0, metavar="X", help="default 10")
    p.add_argument("--steps", type=positive_int, default=200, metavar="N", help="default 200")
    p.add_argument("--out", type=non_empty, metavar="FILE.png", help="the plot (default lr-find-MODEL.png)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


SETTINGS = ("model", "dataset", "data_dir", "image_size", "batch_size", "optimizer", "subset", "seed", "device")


def run(args: argparse.Namespace) -> int:
    from ..engine import build_config
    from ..engine.lr_find import find_lr, plot_range_test
    from .common import safe_output_file

    config = build_config(args.recipe, {name: getattr(args, name) for name in SETTINGS
                                        if getattr(args, name) is not None})
    inputs = [path for path in (config.init_from, config.manifest, args.recipe) if path]
    out = safe_output_file(args.out or f"lr-find-{config.model}.png", inputs, figure=True)
    result = find_lr(config, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps, quiet=args.quiet)
    plot_range_test(out, result, f"lr range test: {config.model} on {config.dataset}, batch {config.batch_size}")
    ended = "the loss exploded" if result.stopped_early else "the range ended"
    print(f"{len(result.lrs)} steps from lr {result.lrs[0]:.2g} to {result.lrs[-1]:.2g} ({ended}); "
          f"loss minimum at lr {result.min_loss_lr:.3g}, steepest fall at lr {result.steepest_lr:.3g}")
    print(f"suggested lr: {result.suggested_lr:.3g} (plot in {out})")
    if result.losses.index(min(result.losses)) < len(result.losses) // 10:
        print("note: the loss hardly fell before it rose, so the suggestion is unsure; start the range lower "
              "(--start-lr) or check the data and model.")
    return 0
