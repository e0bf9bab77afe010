"""Exporting a trained network to ONNX or TorchScript, and proving the export right.

* ONNX goes through ``torch.onnx.export(dynamo=True)`` (the ``torch.export`` based
  exporter; it needs the ``onnx`` and ``onnxscript`` packages). The older TorchScript
  based exporter cannot express VGG's adaptive pooling when the feature map does not
  divide 7 (every input under 224 px). Weights are stored inside the one ``.onnx`` file.
* TorchScript is ``torch.jit.trace`` of the eval-mode network (deprecated by PyTorch in
  favour of ``torch.export``, but still what C++ ``torch::jit::load`` reads). Our models
  have no data-dependent control flow in eval mode, so the trace is the whole network.

Both are traced at a fixed image size. ``dynamic_batch`` leaves the batch dimension free
(TorchScript traces are batch-agnostic for these models anyway).

:func:`check_parity` runs the exported file (ONNX Runtime, or the loaded TorchScript
module) and the PyTorch model on the same random inputs and reports the largest
absolute difference of the logits.
"""

from __future__ import annotations

import io
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from ..files import atomic_output, atomic_write_bytes
from ..errors import UserError
from .figures import output_file
from .metrics import check_finite_outputs

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
PARITY_TOLERANCE = 1e-4


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Exports and checks use the inference network; the caller's model keeps its mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def export_onnx(model: nn.Module, path: Path, example: torch.Tensor, dynamic_batch: bool = False) -> Path:
    """Write ``model``'s eval-mode network as one self-contained ONNX file at ``path``, atomically."""
    try:
        import onnx  # noqa: F401  (the exporter needs it; a clear message beats its ImportError)
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise UserError(f"ONNX export needs the onnx and onnxscript packages ({error.name} is missing); "
                        f"pip install onnx onnxscript onnxruntime.") from None
    path = Path(path)
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    with atomic_output(path, suffix=path.suffix) as temp, warnings.catch_warnings(), _eval_mode(model):
        warnings.simplefilter("ignore")  # the exporter's progress chatter about deprecations
        torch.onnx.export(model, (example,), temp, dynamo=True, external_data=False,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_shapes=dynamic_shapes, verbose=False)
    return path


def ignore_torchscript_deprecation() -> None:
    """Inside ``warnings.catch_warnings()``: torch.jit's notice that TorchScript is deprecated
    (a FutureWarning in some releases, a DeprecationWarning in others) says nothing to act on here."""
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+` is deprecated")


def export_torchscript(model: nn.Module, path: Path, example: torch.Tensor) -> Path:
    """Write ``torch.jit.trace`` of ``model``'s eval-mode network at ``path``, atomically."""
    path = Path(path)
    # Saved to memory, then written from Python: torch.jit.save's own file writer aborts the
    # whole process (std::terminate in its destructor) when a write fails, e.g. on a full disk.
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), _eval_mode(model):
        ignore_torchscript_deprecation()
        torch.jit.save(torch.jit.trace(model, example, check_trace=False), buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def export_model(model: nn.Module, path: Path, fmt: str, example: torch.Tensor, dynamic_batch: bool = False) -> Path:
    """Export in ``fmt`` ("onnx" or "torchscript") into ``path``, whose directory is created if needed."""
    output_file(path)  # before the export, which takes a while
    if fmt == "onnx":
        return export_onnx(model, path, example, dynamic_batch)
    if fmt == "torchscript":
        return export_torchscript(model, path, example)
    raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float
    batch_sizes: tuple[int, ...]
    tolerance: float  # relative to logit_scale
    logit_scale: float = 1.0  # the largest |logit| PyTorch gave, at least 1

    @property
    def limit(self) -> float:
        """The largest difference allowed: float32 arithmetic done in another order (another
        runtime's kernels) errs in proportion to the values, so large logits may differ more."""
        return self.tolerance * self.logit_scale

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.limit


def run_exported(path: Path, fmt: str, images: torch.Tensor) -> torch.Tensor:
    """Logits of an exported file for ``images`` (CPU): ONNX Runtime or TorchScript."""
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise UserError("checking an ONNX export needs onnxruntime; pip install onnxruntime.") from None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.cpu().numpy()})
        return torch.from_numpy(logits)
    with warnings.catch_warnings(), torch.no_grad():
        ignore_torchscript_deprecation()
        module = torch.jit.load(str(path), map_location="cpu")
        return module(images.cpu())


@torch.no_grad()
def check_parity(model: nn.Module, path: Path, fmt: str, image_shape: tuple[int, int, int],
                 batch_sizes: tuple[int, ...] = (2,), tolerance: float = PARITY_TOLERANCE,
                 seed: int = 0, weights: str | None = None) -> Parity:
    """Largest |exported - PyTorch| logit difference over random standard-normal batches,
    to be at most ``tolerance`` times the largest logit magnitude (or ``tolerance``, below 1).

    PyTorch logits with NaN or inf are refused (UserError naming ``weights``): compared with
    NaN, every difference would look within the limit."""
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    worst, scale = 0.0, 1.0
    for batch in batch_sizes:
        images = torch.randn(batch, *image_shape, generator=generator)
        with _eval_mode(model):
            expected = model(images.to(device)).float().cpu()
        check_finite_outputs(expected, weights, "random inputs")
        actual = run_exported(path, fmt, images).float()
        if actual.shape != expected.shape:
            raise RuntimeError(f"the export gives logits of shape {tuple(actual.shape)}, "
                               f"PyTorch {tuple(expected.shape)}")
        worst = max(worst, (actual - expected).abs().max().item())
        scale = max(scale, expected.abs().max().item())
    return Parity(worst, tuple(batch_sizes), tolerance, scale)
