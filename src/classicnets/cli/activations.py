"""``classicnets activations``: feature maps of one image, block by block."""

from __future__ import annotations

import argparse

from .common import non_empty, positive_int, safe_output_folder, weights_file

# Columns per figure. Drawing time grows quickly with them: on two CPU cores a two-row
# figure takes about 10 s with 64 maps a row, 3 minutes with 256 and 10 minutes with 400.
MAX_CHANNELS = 256

EPILOG = """\
blocks: as each network declares them, e.g. VGG block1 .. block5 (each convolution's output
after its ReLU); GoogLeNet stem1, stem2 (the stem convolutions) and inception3a ..
inception5b (the four branches: 1x1, 3x3, 5x5, pool projection); ResNet stem, layer1.0 ..;
LeNet C1 .. C5. Blocks without a feature map at the run's image size are left out.
--layers also takes module names (e.g. features.3, inception4a.branch3x3).

The image is prepared as the run's images were: shorter side scaled to the run's image
size, centre square, grey for 1-channel networks, the run's mean and std. Each row shows
the image and the strongest feature maps (highest mean activation), each stretched to its
own range.

outputs in --out (default RUN_DIR/activations/IMAGE_NAME): one BLOCK.png per block.

exit status: 0 done; 2 bad input (missing run or image, unknown layer, an output that
would replace the image, a run's own file or another image).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "activations", help="feature maps of one image, per block (VGG blocks, Inception branches, ...)",
        description="Draw grids of the feature maps a trained network computes for one image.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=non_empty, metavar="RUN_DIR", help="run directory written by classicnets train")
    p.add_argument("image", type=non_empty, metavar="IMAGE", help="an image file (JPEG, PNG, ...)")
    p.add_argument("--layers", type=non_empty, nargs="+", metavar="NAME",
                   help="blocks or module names (default: every block)")
    p.add_argument("--channels", type=channel_count, default=8, metavar="N",
                   help=f"feature maps per row (default 8; at most {MAX_CHANNELS}, and the layer's channel count)")
    p.add_argument("--out", type=non_empty, metavar="DIR", help="output directory")
    p.set_defaults(run=run)


def channel_count(text: str) -> int:
    """--channels: every map is a column of the figure, so an absurd count is refused at
    once (the figure itself never draws more columns than the widest layer has channels)."""
    value = positive_int(text)
    if value > MAX_CHANNELS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_CHANNELS} feature maps per row, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..analysis.activations import capture_activations, plot_activations, prepare_image, resolve_layers
    from ..analysis.figures import output_dir
    from ..analysis.run_data import run_home
    from ..engine.checkpoint import load_run
    from ..errors import UserError

    model, metadata = load_run(args.run_dir)
    image = prepare_image(args.image, metadata)
    figures = resolve_layers(model, args.layers, image)  # every block: those with a feature map at this size
    if not figures:
        raise UserError(f"no block of {metadata['model']} outputs a feature map at {image.shape[-1]} px, "
                        f"so there is nothing to draw.")
    out_dir = safe_output_folder(args.out or run_home(args.run_dir) / "activations" / Path(args.image).stem,
                                 [f"{figure_name}.png" for figure_name in figures],
                                 [args.image, weights_file(args.run_dir)])
    output_dir(out_dir)
    everything = capture_activations(model, image, [name for names in figures.values() for name in names])
    written = []
    for figure_name, names in figures.items():
        title = f"{metadata['model']}: {figure_name} on {Path(args.image).name}"
        written.append(plot_activations(out_dir / f"{figure_name}.png", image, {n: everything[n] for n in names},
                                        metadata["mean"], metadata["std"], title, args.channels))
    print(f"wrote {len(written)} figure(s) to {out_dir}: {', '.join(p.name for p in written)}")
    return 0
