"""``classicnets predict``: classify image files with a trained run."""

from __future__ import annotations

import argparse

from .common import DEVICES, non_empty, positive_int, safe_output_folder, weights_file

EPILOG = """\
SOURCE is a run directory (its best.safetensors) or a .safetensors file written by
classicnets train; its metadata gives the classes and the preprocessing (shorter side
scaled to the run's image size, centre square, the run's mean and std). IMAGE may be a
file (JPEG, PNG including grey, RGBA and 16-bit, WebP, ...; EXIF orientation honoured) or
a folder, read recursively.

--cam DIR writes IMAGE_cam.png per image: Grad-CAM of the top class, taken at the deepest
block (as the network declares its blocks) whose map is still at least 4x4 at the run's
image size (the last block at 224 px; VGG's third max-pool or GoogLeNet's inception3b at
28 px, where the last maps are 1x1). A network with no feature map at that size is refused.
An overlay never replaces an input or an image that is not an earlier overlay: such a
DIR is refused before any image is classified.

--json prints one JSON object per image: {"path", "predictions": [{"class", "index",
"probability"}], "cam"} or {"path", "error"}.

exit status: 0 every image classified; 2 bad input (missing or unreadable SOURCE, a --cam
DIR where an overlay would replace an image, weights whose outputs are NaN or inf) or
some images could not be read: those are reported and the others are still classified.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict", help="top-k classes (and Grad-CAM maps) for image files",
        description="Print the top-k classes with probabilities for each image, using a trained run.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", type=non_empty, metavar="SOURCE", help="run directory or .safetensors weights")
    p.add_argument("images", type=non_empty, metavar="IMAGE", nargs="+", help="image files or folders")
    p.add_argument("--topk", type=positive_int, default=3, metavar="K", help="classes to show (default 3)")
    p.add_argument("--cam", type=non_empty, metavar="DIR", help="write a Grad-CAM overlay PNG per image into DIR")
    p.add_argument("--json", action="store_true", help="JSON lines output")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="default cpu")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..analysis.figures import output_dir
    from ..analysis.predict import cam_file_names, expand_inputs, predict_images
    from ..engine.checkpoint import load_run
    from ..errors import UserError

    from ..device import resolve_device

    device = str(resolve_device(args.device))  # a GPU asked for but absent is refused here
    weights = weights_file(args.source)
    if args.cam:  # an unusable folder fails before any work
        output_dir(args.cam)
    model, metadata = load_run(args.source, device=device)
    paths = expand_inputs(args.images)
    cam_dir = None
    if args.cam:  # no overlay may replace an input photo, the weights or another image
        cam_dir = safe_output_folder(args.cam, cam_file_names(paths), [*paths, weights], option="--cam")
    failed = 0
    for prediction in predict_images(model, metadata, paths, topk=args.topk, cam_dir=cam_dir, device=device,
                                     weights=str(weights)):
        failed += prediction.error is not None
        if args.json:
            print(json.dumps(prediction.to_dict()), flush=True)
        elif prediction.error is not None:
            print(f"classicnets predict: cannot read {prediction.path}: {prediction.error}", file=sys.stderr)
        else:
            print(prediction, flush=True)
    if failed == len(paths):
        raise UserError(f"none of the {len(paths)} image(s) could be read.")
    if failed:
        raise UserError(f"{failed} of {len(paths)} image(s) could not be read; the others were classified.")
    return 0
