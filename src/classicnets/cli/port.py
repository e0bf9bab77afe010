"""``classicnets port``: torchvision's ImageNet weights as a classicnets safetensors file."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import non_empty, positive_int, safe_output_file

DESCRIPTION = """\
Convert torchvision's ImageNet weights into one of our models and write its state dict
as safetensors, with the metadata (model, num_classes, in_chans) needed to rebuild it.
The weights are downloaded into TORCH_HOME/hub/checkpoints on first use; --from-file
converts a torchvision state dict (.pth) that is already on disk instead.
Models with torchvision weights (their registry entries name the weights): vgg11, vgg13,
vgg16, vgg19 and their _bn variants, googlenet_tv, alexnet, resnet18, resnet34, resnet50,
resnet101, resnet152 (torchvision's V1 weights, the paper-era recipe) and inception_v3
(googlenet_tv and inception_v3 get transform_input, as torchvision sets for these weights).
A different --num-classes keeps all but the classifier, which starts fresh; a different --in-chans adapts the first convolution (1 channel: the sum of the
RGB filters, so a grey input gives the activations of its RGB copy, each channel holding
the same normalised values). --out may not replace the --from-file source, a file of a
run directory or an image."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "port",
        help="convert torchvision's ImageNet weights into our models",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=non_empty,
                   help="a model with torchvision weights: vgg11 ... vgg19_bn, googlenet_tv, alexnet, "
                        "resnet18 ... resnet152, inception_v3")
    p.add_argument("--out", type=non_empty, required=True, metavar="FILE",
                   help="where to write the weights (.safetensors)")
    p.add_argument("--from-file", type=non_empty, metavar="PTH",
                   help="convert this torchvision state dict instead of downloading")
    p.add_argument("--num-classes", type=positive_int, metavar="N",
                   help="classes of the new model (default: as the source, 1000 for ImageNet)")
    p.add_argument("--in-chans", type=positive_int, metavar="C",
                   help="input channels of the new model (default: as the source, 3)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..models import get_model_entry
    from ..models.porting import (download_torchvision_state_dict, load_torchvision_file,
                                  port_report, port_torchvision_state_dict, save_ported_weights,
                                  torchvision_weights_name)

    entry = get_model_entry(args.model)
    torchvision_weights_name(entry.name)  # fail on unsupported models before reading anything
    check_out_file(Path(args.out), args.from_file)  # before the download (about 500 MB for VGG)
    if args.from_file is not None:
        state_dict = load_torchvision_file(args.from_file)
    else:
        state_dict = download_torchvision_state_dict(entry.name)
    model = port_torchvision_state_dict(entry, state_dict, num_classes=args.num_classes, in_chans=args.in_chans)
    path = save_ported_weights(model, args.out)
    print(f"wrote {path}: {port_report(model).summary()}")
    return 0


def check_out_file(out: Path, source: str | None = None) -> None:
    """Refuse an --out that saving would refuse (see save_ported_weights): a folder, a
    missing folder or one that cannot be written; and one that would replace the --from-file
    source, a run's own file (its best.safetensors, say) or an image."""
    from ..analysis.figures import output_file
    from ..models.porting import check_weights_folder

    safe_output_file(out, [source] if source else [])
    check_weights_folder(out)  # before output_file, which would create the folder
    output_file(out)
