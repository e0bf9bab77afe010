"""``classicnets predict``: classify image files with a trained run."""

from __future__ import annotations

import argparse

from .common import non_empty, positive_int

EPILOG = """\
SOURCE is a run directory (its best.safetensors) or a .safetensors file written by
classicnets train; its metadata gives the classes and the preprocessing (shorter side
scaled to the run's image size, centre square, the run's mean and std). IMAGE may be a
file (JPEG, PNG including grey, RGBA and 16-bit, WebP, ...; EXIF orientation honoured) or
a folder, read recursively.

--cam DIR writes IMAGE_cam.png per image: Grad-CAM of the top class, taken at the deepest
block whose map is still at least 4x4 at the run's image size (the last block at 224 px;
VGG's third max-pool or GoogLeNet's inception3b at 28 px, where the last maps are 1x1).

--json prints one JSON object per image: {"path", "predictions": [{"class", "index",
"probability"}], "cam"} or {"path", "error"}.

exit status: 0 every image classified; 2 bad input (missing or unreadable SOURCE) or
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
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default cpu")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..analysis.figures import output_dir
    from ..analysis.predict import expand_inputs, predict_images
    from ..engine.checkpoint import load_run
    from ..errors import UserError

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda was given but no CUDA GPU is available.")
    cam_dir = output_dir(args.cam) if args.cam else None  # an unusable folder fails before any work
    model, metadata = load_run(args.source, device=args.device)
    paths = expand_inputs(args.images)
    failed = 0
    for prediction in predict_images(model, metadata, paths, topk=args.topk, cam_dir=cam_dir, device=args.device):
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
