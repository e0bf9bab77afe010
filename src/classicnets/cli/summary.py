"""``classicnets summary MODEL``: per-layer or per-block table with totals, or with
``--paper`` the paper's own table beside the figures computed from our model."""

from __future__ import annotations

import argparse

from ..errors import UserError
from .common import bounded_batch_size, bounded_image_size, non_empty, positive_int

DEFAULTS = {"input_size": 224, "in_chans": 3, "num_classes": 1000, "batch_size": 1}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "summary",
        help="layer table with output shapes, parameters, multiply-adds, receptive fields and memory",
        description="Summarise a model: every layer (or block) with its output shape, parameters "
                    "and their share of the model's, multiply-adds, receptive field and jump, then "
                    "the totals: parameters, multiply-adds, parameter memory, activation memory and "
                    "the memory autograd saves for backward. "
                    "Measured from the model on the meta device, where nothing is allocated. "
                    "With --paper, print the paper's table (LeNet-5's layer counts, AlexNet's shapes and "
                    "neurons, VGG Table 2, GoogLeNet Table 1, ResNet Tables 1 and 6, Inception v3 Table 1) "
                    "beside the same figures computed from our model, marking the printed figures that "
                    "do not follow from the architecture.",
        epilog="Columns: 'share' is the row's percentage of all the parameters ('-': it has none). "
               "'RF' is the receptive field of the row's output: the side, in input pixels, of "
               "the square each output value depends on (two stacked 3x3 convolutions see 5x5, "
               "three see 7x7); 'HxW' where it is not square. 'jump' is the effective stride: "
               "input pixels between neighbouring output values. Both follow the forward pass: "
               "a concatenation or a sum has the field of its widest input (an inception module "
               "that of its widest branch); after a global pool or a linear layer every output "
               "sees the whole input, shown as 'all'. They do not depend on --image-size, except "
               "where an adaptive pool changes with the size of its input.",
    )
    p.add_argument("model", type=non_empty, metavar="MODEL",
                   help="a registered model (see 'classicnets models'); with --paper also a family: "
                        "vgg, googlenet, lenet, alexnet, resnet or inception_v3")
    p.add_argument("--image-size", "--input-size", dest="input_size", type=bounded_image_size, default=None,
                   help="height and width of the square input, as train's --image-size (default: the model's "
                        "native size, 224 for most)")
    p.add_argument("--in-chans", type=positive_int, default=None, help="input channels (default: 3)")
    p.add_argument("--num-classes", type=positive_int, default=None, help="output classes (default: 1000)")
    p.add_argument("--batch-size", type=bounded_batch_size, default=None,
                   help="images per batch; MACs and memory are for the whole batch (default: 1)")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--layers", dest="view", action="store_const", const="layers",
                      help="one row per layer (the default)")
    view.add_argument("--blocks", dest="view", action="store_const", const="blocks",
                      help="one row per block: VGG stages, GoogLeNet stem, inception modules, heads")
    view.add_argument("--paper", dest="view", action="store_const", const="paper",
                      help="the paper's table beside ours, at the paper's setting: 224x224, 3 channels, "
                           "1000 classes (VGG, GoogLeNet, ImageNet ResNets); 227x227, the input AlexNet's "
                           "printed maps need; 299x299 (Inception v3); 32x32 and 10 classes (LeNet-5, 1 "
                           "channel; CIFAR ResNets)")
    p.set_defaults(run=run, view="layers")


def run(args: argparse.Namespace) -> int:
    if args.view == "paper":
        from ..analysis.paper_tables import paper_table

        _reject_setting_flags(args)
        print(paper_table(args.model))
        return 0

    import torch

    from ..analysis.summary import format_summary, summarize
    from ..models import create_model, get_model_entry

    # The model's own input side unless one is asked for (LeNet-5 as printed takes 32 px only).
    native = {"input_size": getattr(get_model_entry(args.model), "native_input_size", None) or DEFAULTS["input_size"]}
    setting = {key: {**DEFAULTS, **native}[key] if getattr(args, key) is None else getattr(args, key)
               for key in DEFAULTS}
    with torch.device("meta"):  # shapes and counts only: nothing is allocated
        model = create_model(args.model, num_classes=setting["num_classes"], in_chans=setting["in_chans"])
    summary = summarize(model, setting["input_size"], setting["in_chans"], setting["batch_size"], name=args.model)
    print(format_summary(summary, view=args.view))
    return 0


def _reject_setting_flags(args: argparse.Namespace) -> None:
    flag_names = {"input_size": "--image-size"}  # --input-size is its older alias
    given = [flag_names.get(key, f"--{key.replace('_', '-')}") for key in DEFAULTS if getattr(args, key) is not None]
    if given:
        raise UserError(f"--paper compares at each paper's own setting (input size, channels, classes, "
                        f"batch 1), so {', '.join(given)} cannot be used with it.")
