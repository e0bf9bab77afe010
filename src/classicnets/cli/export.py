"""``classicnets export``: a run's network as ONNX or TorchScript, checked against PyTorch."""

from __future__ import annotations

import argparse

from .common import bounded_batch_size, non_empty, safe_output_file, weights_file

EPILOG = """\
The network is exported in eval mode (GoogLeNet without its auxiliary heads) for
N x C x S x S input named "images", S the run's image size, and one output "logits".
ONNX uses torch.onnx's torch.export-based exporter and needs the onnx and onnxscript
packages; the check runs the file in ONNX Runtime (onnxruntime). TorchScript is
torch.jit.trace, loadable from C++ with torch::jit::load.

After writing, the export is run on random inputs (batch 1 and 3 with --dynamic-batch,
else --batch-size) and its logits are compared with PyTorch's; the largest difference must
be at most 1e-4 times the largest logit magnitude (1e-4 for logits below 1).

exit status: 0 written and checked; 1 the check failed; 2 bad input (missing run,
missing package, unwritable output, an output that would replace a run's own file, the
weights or an image; weights whose outputs are NaN or inf).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="export a run to ONNX or TorchScript, checked against PyTorch",
        description="Export a trained network to ONNX or TorchScript and check that the exported file "
                    "reproduces the PyTorch logits.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=non_empty, metavar="RUN_DIR",
                   help="run directory (or .safetensors) written by classicnets train")
    p.add_argument("--format", choices=("onnx", "torchscript"), required=True, dest="fmt",
                   help="onnx or torchscript")
    p.add_argument("--dynamic-batch", action="store_true", help="leave the batch dimension free (ONNX)")
    p.add_argument("--batch-size", type=bounded_batch_size, default=1, metavar="N",
                   help="batch size traced into the file without --dynamic-batch (default 1)")
    p.add_argument("--out", type=non_empty, metavar="FILE", help="default RUN_DIR/model.onnx or RUN_DIR/model.pt")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    import torch

    from ..analysis.export import SUFFIXES, check_parity, export_model
    from ..analysis.metrics import check_finite_outputs
    from ..analysis.run_data import run_home
    from ..engine.checkpoint import load_run

    weights = str(weights_file(args.run_dir))
    model, metadata = load_run(args.run_dir)
    default = run_home(args.run_dir) / f"model{SUFFIXES[args.fmt]}"
    out = safe_output_file(args.out or default, [weights])
    shape = (int(metadata["in_chans"]), int(metadata["image_size"]), int(metadata["image_size"]))
    example_batch = 2 if args.dynamic_batch else args.batch_size  # torch.export specialises a batch of 1
    example = torch.randn(example_batch, *shape)
    with torch.no_grad():  # a diverged network is not worth a file
        check_finite_outputs(model(example), weights, "random inputs")
    path = export_model(model, out, args.fmt, example, dynamic_batch=args.dynamic_batch)
    batch = "any batch size" if args.dynamic_batch else f"batch {args.batch_size}"
    print(f"wrote {path} ({args.fmt}, {batch}, input {'x'.join(map(str, shape))})")
    if args.no_check:
        return 0
    batch_sizes = (1, 3) if args.dynamic_batch else (args.batch_size,)
    parity = check_parity(model, path, args.fmt, shape, batch_sizes=batch_sizes, weights=weights)
    verdict = "ok" if parity.ok else "FAILED"
    line = (f"check {verdict}: largest logit difference {parity.max_abs_diff:.2e} "
            f"(limit {parity.limit:.1e}) at batch {', '.join(map(str, batch_sizes))}")
    print(line, file=sys.stdout if parity.ok else sys.stderr)
    return 0 if parity.ok else 1
