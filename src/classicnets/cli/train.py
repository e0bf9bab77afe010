"""``classicnets train``: train a model from a recipe and flags, or resume a run."""

from __future__ import annotations

import argparse
import sys

from .common import (DEVICES, auto_switch, bounded_batch_size, bounded_image_size, bounded_seed, fraction, non_empty,
                     non_negative_int, positive_float, positive_int)

EPILOG = """\
precedence: built-in defaults < photo defaults (photo datasets only) < --recipe YAML <
flags; the effective configuration is saved as RUN_DIR/config.yaml.

{photo_defaults_paragraph}

outputs in the run directory: config.yaml, metrics.csv, best.safetensors (best
validation weights, loadable on their own), last.ckpt (for --resume), curves.png,
confusion_matrix.png, summary.json.

--resume RUN_DIR continues from RUN_DIR/last.ckpt with the saved configuration. Flags
that would change what is learned are refused if they differ from the saved values;
--epochs may be raised (the schedule is re-planned over the new total), and --data-dir,
--device, --compile, --tensorboard and --quiet may change.

several processes (DistributedDataParallel; see the README's "Multi-GPU and multi-node"):
  classicnets train --nproc 4 ...            one machine, 4 processes (runs torchrun for you)
  torchrun --nproc_per_node 4 -m classicnets train ...    the same, or multi-node with
      --nnodes N --node-rank I --rdzv-backend c10d --rdzv-endpoint HOST:PORT
--batch-size is per process: global batch = batch size x processes x --grad-accum-steps.
--lr is NOT scaled for you: scale it with the global batch (linear rule, Goyal et al.).
Each rank trains on a disjoint shard of every epoch; validation and test figures cover
the whole split; rank 0 alone prints and writes files. A rank that fails stops the job.
--resume works the same way (every rank reads last.ckpt); bit-exact resume is promised
for single-process runs only.

exit status: 0 done; 2 bad input (unknown model or dataset, bad number, existing or
unwritable run directory, missing data) or a full disk (finished epochs stay saved; resume
with --resume once there is room), or a run directory in use by another training
process (one process per run directory; the message names its pid); 3 training
diverged (NaN or infinite training or validation loss; last.ckpt keeps the last good
epoch); 130 interrupted (Ctrl-C) and 143 terminated (SIGTERM, as docker stop, Kubernetes
and Slurm send): finished epochs stay saved, resume with --resume.
"""

PHOTO_DEFAULTS_PARAGRAPH = (
    "photo defaults: a photo dataset ({photo_datasets}) takes, where neither recipe nor flag sets "
    "them, {photo_defaults}. lr and weight decay come with the optimizer: another --optimizer keeps "
    "the built-in ones unless they are given too. Measured: BENCHMARKS.md.")

# flag destination -> TrainConfig field, for flags whose names differ
FIELD_NAMES = {"tta": "tta_flip", "dist_timeout": "dist_timeout_minutes"}
NOT_CONFIG = {"command", "run", "argv", "recipe", "resume", "overwrite", "quiet", "nproc"}
SWITCHED_OFF_BY_NONE = {"ema_decay", "grad_clip"}  # None means "not used" rather than "not given"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a model (recipe + flags), or resume a run",
        description="Train a model on a dataset: seeded train/val split, best epoch chosen on validation "
                    "accuracy, test split evaluated once at the end with the best weights.",
        epilog=epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to train")
    what.add_argument("--model", type=non_empty, help="model name (see `classicnets models`)")
    what.add_argument("--dataset", type=non_empty, help="dataset name (default fashion-mnist)")
    what.add_argument("--recipe", type=non_empty, metavar="YAML",
                      help="recipe file, e.g. recipes/fashion_mnist/vgg16.yaml")
    what.add_argument("--data-dir", type=non_empty, metavar="DIR",
                      help="data root (default: $CLASSICNETS_DATA, else ./data)")
    what.add_argument("--out", type=non_empty, metavar="RUN_DIR",
                      help="run directory (default runs/<model>-<dataset>-<time>)")
    what.add_argument("--resume", type=non_empty, metavar="RUN_DIR",
                      help="continue the run in RUN_DIR from its last.ckpt")
    what.add_argument("--overwrite", action="store_true", help="replace the results in an existing run directory")

    transfer = p.add_argument_group("transfer and photo datasets")
    transfer.add_argument("--pretrained", choices=("torchvision",),
                          help="start from torchvision's ImageNet weights (vgg11-19, their _bn, googlenet_tv)")
    transfer.add_argument("--init-from", type=non_empty, metavar="RUN_DIR|FILE",
                          help="load every matching tensor from a run or .safetensors file; a head of "
                               "another class count is replaced, a 1-channel stem adapted to 3 and back")
    transfer.add_argument("--init-mode", choices=("vgg-staged",),
                          help="with --init-from: the VGG paper's staged initialisation (a deeper VGG takes the "
                               "first four convolutions and the three FC layers of a trained configuration A, by "
                               "position; the rest starts at random)")
    transfer.add_argument("--freeze", choices=("features",), help="train the classifier head only")
    transfer.add_argument("--backbone-lr", type=float, metavar="X",
                          help="learning rate of everything but the head (default: --lr)")
    transfer.add_argument("--manifest", type=non_empty, metavar="CSV", help="split manifest from `classicnets split`")
    transfer.add_argument("--skip-bad", action="store_true", default=None,
                          help="leave unreadable images out (and say how many) instead of stopping")

    hyper = p.add_argument_group("training")
    hyper.add_argument("--epochs", type=positive_int)
    hyper.add_argument("--batch-size", type=bounded_batch_size,
                       help="per process (see the epilog for the global batch)")
    hyper.add_argument("--lr", type=positive_float, help="peak learning rate (never scaled with the global batch)")
    hyper.add_argument("--grad-accum-steps", type=positive_int, metavar="K",
                       help="add the gradients of K batches before each optimizer step")
    hyper.add_argument("--optimizer", choices=("sgd", "adam", "adamw"))
    hyper.add_argument("--scheduler", choices=("cosine", "onecycle", "step", "plateau"),
                       help="plateau = the VGG paper's divide-by-10 when validation accuracy stalls")
    hyper.add_argument("--weight-decay", type=float, metavar="X", help="not applied to biases and norm weights")
    hyper.add_argument("--warmup-epochs", type=float, metavar="X")
    hyper.add_argument("--label-smoothing", type=fraction, metavar="X")
    hyper.add_argument("--ema-decay", type=fraction, metavar="X", help="EMA of the weights (e.g. 0.999); "
                       "validation, selection and test then use the EMA weights")
    hyper.add_argument("--grad-clip", type=positive_float, metavar="NORM", help="clip the gradient norm")
    hyper.add_argument("--image-size", type=bounded_image_size, metavar="PX")
    hyper.add_argument("--subset", type=positive_int, metavar="N", help="train on a stratified N images only (a quick look); the validation "
                       "split shrinks in proportion, the test split stays whole")
    hyper.add_argument("--val-size", type=positive_int, metavar="N")
    hyper.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                       help="flip test-time augmentation for validation and test")
    hyper.add_argument("--seed", type=bounded_seed)

    run_group = p.add_argument_group("execution")
    run_group.add_argument("--device", choices=DEVICES,
                           help="auto: a CUDA GPU, else Apple's GPU (MPS), else the CPU")
    run_group.add_argument("--cpu-bf16", type=auto_switch, metavar="auto|true|false",
                           help="bf16 autocast on the CPU; auto: only where the CPU computes bf16 natively "
                                "(AVX-512 BF16, AMX, ARM BF16), float32 elsewhere, where bf16 is slower")
    run_group.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                           help="torch.compile the model")
    run_group.add_argument("--compile-mode",
                           choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                           help="reduce-overhead and max-autotune capture CUDA graphs")
    run_group.add_argument("--loader", choices=("auto", "device", "dataloader"))
    run_group.add_argument("--num-workers", type=non_negative_int)
    run_group.add_argument("--deterministic", action="store_true", default=None,
                           help="deterministic algorithms, everything seeded: a rerun or a resumed run "
                                "matches bit for bit on the same machine and thread count")
    run_group.add_argument("--nproc", type=positive_int, metavar="N",
                           help="train with N processes on this machine (launches torchrun; one GPU each)")
    run_group.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=None,
                           help="several processes: batch-norm statistics over the global batch")
    run_group.add_argument("--dist-timeout", type=positive_float, metavar="MINUTES",
                           help="several processes: a rank waiting longer than this on the others fails "
                                "the job (default 10)")
    run_group.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                           help="write TensorBoard event files into RUN_DIR/tensorboard (loss per logging "
                                "step; per epoch train/val loss and accuracy, lr, img/s, curves; the test "
                                "confusion matrix and the hyperparameters with the final metrics)")
    run_group.add_argument("--quiet", action="store_true", help="no progress bar: one line per epoch")
    show_config_defaults(hyper, run_group)
    p.set_defaults(run=run)


def epilog() -> str:
    """EPILOG with the photo-defaults paragraph filled in from their owners."""
    import textwrap

    from ..data.registry import list_photo_datasets
    from ..engine.config import photo_defaults_text

    paragraph = PHOTO_DEFAULTS_PARAGRAPH.format(photo_datasets=", ".join(list_photo_datasets()),
                                                photo_defaults=photo_defaults_text())
    return EPILOG.format(photo_defaults_paragraph=textwrap.fill(paragraph, width=88))


def show_config_defaults(*groups: argparse._ArgumentGroup) -> None:
    """Append TrainConfig's default to each setting's help, so --help can never drift from it,
    and the photo datasets' own default where they have one (:data:`PHOTO_DEFAULTS`).

    The flags themselves default to None: a flag not given must not override the recipe."""
    from ..engine.config import PHOTO_DEFAULTS, TrainConfig, setting_text

    defaults = TrainConfig()
    for group in groups:
        for action in group._group_actions:
            field = FIELD_NAMES.get(action.dest, action.dest)
            if not hasattr(defaults, field) or "default" in (action.help or ""):
                continue
            value = getattr(defaults, field)
            if value is None and field not in SWITCHED_OFF_BY_NONE:
                continue  # e.g. --subset: "not given" is explained by its help
            shown = "off" if value is None or value is False else "on" if value is True else value
            if field in PHOTO_DEFAULTS:
                shown = f"{shown}; photos: {setting_text(PHOTO_DEFAULTS[field])}"
            action.help = f"{action.help} (default: {shown})" if action.help else f"default: {shown}"


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The flags actually given, as TrainConfig fields."""
    return {FIELD_NAMES.get(name, name): value for name, value in vars(args).items()
            if name not in NOT_CONFIG and value is not None}


def without_option(argv: list[str], flag: str) -> list[str]:
    """``argv`` with ``flag VALUE`` / ``flag=VALUE`` removed."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == flag:
            skip = True
        elif not item.startswith(f"{flag}="):
            kept.append(item)
    return kept


def run(args: argparse.Namespace) -> int:
    from ..engine.distributed import env_rank, launch_torchrun, launched_by_torchrun
    from ..errors import UserError

    if args.nproc is not None:
        if launched_by_torchrun():
            raise UserError("--nproc launches torchrun itself; do not give it to a run that torchrun started.")
        check_settings(args)  # one clear error here rather than one per rank from torchrun
        return launch_torchrun(args.nproc, without_option(args.argv, "--nproc"))
    try:
        return _run(args)
    except UserError as error:
        if launched_by_torchrun():
            raise UserError(f"rank {env_rank()}: {error}") from None
        raise
    except Exception as error:
        if launched_by_torchrun():  # torchrun stops the others; say which rank it was and why
            print(f"classicnets train: error: rank {env_rank()} failed with {type(error).__name__}: {error}",
                  file=sys.stderr, flush=True)
        raise


def check_settings(args: argparse.Namespace) -> None:
    """Raise the UserError a run would raise for its settings or model name, without running it."""
    from ..engine import build_config, resume_config
    from ..device import resolve_device
    from ..models import get_model_entry

    if args.resume:
        config = resume_config(args.resume, overrides_from_args(args))
    else:
        config = build_config(args.recipe, overrides_from_args(args))
        get_model_entry(config.model)
    resolve_device(config.device)  # e.g. a CUDA recipe on a machine without a GPU


def _run(args: argparse.Namespace) -> int:
    from ..engine import EXIT_DIVERGED, TrainingDiverged, TrainingInterrupted, build_config, resume_config, train
    from ..errors import UserError

    overrides = overrides_from_args(args)
    if args.resume:
        if args.recipe or args.overwrite:
            raise UserError("--resume continues a run with its saved config; it cannot be combined with "
                            "--recipe or --overwrite.")
        config = resume_config(args.resume, overrides)
    else:
        config = build_config(args.recipe, overrides)
    try:
        train(config, resume=bool(args.resume), overwrite=args.overwrite, quiet=args.quiet)
    except TrainingDiverged as error:
        if not error.reported:
            print(f"classicnets train: error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingInterrupted as error:
        print(f"classicnets train: {error}", file=sys.stderr)
        return error.exit_status
    return 0
