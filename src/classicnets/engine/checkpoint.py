"""Checkpoints that survive a crash, and loading a finished run back.

Two files per run directory:

* ``best.safetensors``: the best-validation weights plus the metadata needed to rebuild
  the network without any other file (model name, classes, channels, image size,
  normalisation, class names, model keyword arguments). :func:`load_run` reads it.
* ``last.ckpt``: everything needed to continue training (model, optimizer, schedule, EMA,
  random number generator states, epoch, best metric, history). It holds only tensors,
  dicts, lists, numbers, strings and None, so ``torch.load(weights_only=True)`` reads it.

Every file is written atomically: a temporary file in the same directory, flushed and
fsync'ed, then ``os.replace``d over the old one, so a kill at any moment leaves either the
old or the new file, never a torn one.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserError, load_failure_reason
from ..files import atomic_write, atomic_write_bytes
from ..limits import MAX_CLASSES, MAX_IMAGE_SIZE, MAX_IN_CHANS

BEST_WEIGHTS = "best.safetensors"
LAST_CHECKPOINT = "last.ckpt"
FORMAT = "classicnets-run-v1"
# Metadata values that are JSON (safetensors metadata is a str -> str mapping).
JSON_METADATA = ("num_classes", "in_chans", "image_size", "mean", "std", "class_names",
                 "model_kwargs", "epoch", "val_accuracy")


# ----------------------------------------------------------------------------- weights

def save_weights(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write ``state_dict`` as safetensors; metadata values are stored as JSON strings."""
    from safetensors.torch import save

    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in state_dict.items()}
    text_metadata = {"format": FORMAT}
    for key, value in metadata.items():
        text_metadata[key] = value if isinstance(value, str) else json.dumps(value)
    atomic_write_bytes(path, save(tensors, metadata=text_metadata))


def read_safetensors(path: Path, tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor (on the CPU; none with ``tensors=False``: the header alone is read) and the
    raw string metadata of an existing .safetensors file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            names = handle.keys() if tensors else ()
            return {name: handle.get_tensor(name) for name in names}, handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{path} is not a readable safetensors file ({error}).") from None


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the decoded metadata of a weights file written by :func:`save_weights`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist.")
    tensors, raw = read_safetensors(path)
    if raw.get("format") != FORMAT or "model" not in raw:
        raise UserError(f"{path} was not written by classicnets train (no run metadata).")
    metadata = {}
    for key, value in raw.items():
        try:
            metadata[key] = json.loads(value) if key in JSON_METADATA else value
        except ValueError:
            raise UserError(f"{path}: its metadata field {key} is not valid JSON ({value[:60]!r}).") from None
    check_run_metadata(metadata, path)
    return tensors, metadata


def check_run_metadata(metadata: dict[str, Any], path: Path) -> None:
    """Metadata read from a file is checked like flags are: typed and bounded, so a damaged or
    hand-edited file gets one sentence naming the field instead of a traceback or a
    multi-gigabyte allocation further on."""
    def refuse(field: str, why: str) -> None:
        raise UserError(f"{path}: metadata field {field} {why}; the file is damaged or was not written "
                        f"by classicnets train.")

    for field, limit in (("num_classes", MAX_CLASSES), ("in_chans", MAX_IN_CHANS), ("image_size", MAX_IMAGE_SIZE),
                         ("epoch", 10**9)):
        value = metadata.get(field)
        if field in metadata and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit):
            refuse(field, f"must be a whole number from 1 to {limit:,}, got {value!r}")
    if "model_kwargs" in metadata and not isinstance(metadata["model_kwargs"], dict):
        refuse("model_kwargs", f"must be a mapping, got {metadata['model_kwargs']!r}")
    if "val_accuracy" in metadata and not _is_number(metadata["val_accuracy"], 0, 1):
        refuse("val_accuracy", f"must be a fraction in [0, 1], got {metadata['val_accuracy']!r}")
    names = metadata.get("class_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        refuse("class_names", "must be a list of texts")
    for field in ("mean", "std"):
        values = metadata.get(field)
        if values is not None and (not isinstance(values, list) or not all(
                _is_number(v, 0 if field == "mean" else 1e-12, 1e6) for v in values)):
            refuse(field, f"must be a list of finite numbers{' above 0' if field == 'std' else ''}, got {values!r}")


def check_run_metadata_agrees(metadata: dict[str, Any], path: Path) -> None:
    """The fields of a trained run's metadata that must agree with each other: one class name
    per class, one mean and std per input channel."""
    for field, size, unit in (("class_names", metadata["num_classes"], "classes"),
                              ("mean", metadata["in_chans"], "channels"), ("std", metadata["in_chans"], "channels")):
        if len(metadata[field]) != size:
            raise UserError(f"{path}: metadata field {field} holds {len(metadata[field])} values for {size} {unit}; "
                            f"the file is damaged or was not written by classicnets train.")


def _is_number(value: Any, low: float, high: float) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and low <= value <= high)


# What later commands (predict, evaluate, embed, export) need to rebuild and feed a network.
RUN_METADATA = ("model", "num_classes", "in_chans", "image_size", "mean", "std", "class_names")


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the trained network of a run from its ``best.safetensors``.

    ``path`` is a run directory or a ``.safetensors`` file. Returns the model in eval
    mode on ``device`` and the metadata: model, dataset, num_classes, in_chans,
    image_size, mean, std, class_names, model_kwargs, epoch, val_accuracy.
    """
    from ..models import create_model

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; give a run directory or a .safetensors file.")
    weights_path = path / BEST_WEIGHTS if path.is_dir() else path
    if not weights_path.is_file():
        raise UserError(f"{path} has no {BEST_WEIGHTS}; has its first epoch finished?")
    tensors, metadata = read_weights(weights_path)
    missing = [key for key in RUN_METADATA if key not in metadata]
    if missing:  # e.g. a file from `classicnets port`: weights without a dataset's preprocessing
        raise UserError(f"{weights_path} lacks {', '.join(missing)}, so it cannot stand for a trained run; "
                        f"give a run directory or best.safetensors written by `classicnets train`.")
    check_run_metadata_agrees(metadata, weights_path)

    def build() -> nn.Module:
        return create_model(metadata["model"], num_classes=metadata["num_classes"],
                            in_chans=metadata["in_chans"], **metadata.get("model_kwargs", {}))

    with torch.device("meta"):  # no memory and no initialisation: every saved tensor comes from the file
        model = build()
    try:
        model.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as error:
        raise UserError(f"{weights_path} does not fit {metadata['model']} ({_first_line(error)}).") from None
    fill_unsaved_buffers(model, build)
    return model.to(device).eval(), metadata


def fill_unsaved_buffers(model: nn.Module, build) -> None:
    """Give ``model``'s non-persistent buffers (a file never holds them: e.g. LeNet-5's C3
    connection table), still on the meta device after loading, the values a model built for
    real computes for them."""
    unsaved = [name for name, buffer in model.named_buffers() if buffer.is_meta]
    if not unsaved:
        return
    computed = dict(build().named_buffers())
    for name in unsaved:
        owner, _, leaf = name.rpartition(".")
        model.get_submodule(owner).register_buffer(leaf, computed[name], persistent=False)


# ----------------------------------------------------------------------------- training state

def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda handle: torch.save(state, handle))


# What every last.ckpt holds (see the loop's commit_epoch).
CHECKPOINT_KEYS = ("model", "optimizer", "schedule", "ema", "rng", "progress", "model_name", "model_kwargs")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """``last.ckpt``, read with ``weights_only=True``: a foreign, damaged or malicious file gets
    our own sentence (never torch's advice to turn the protection off)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"cannot resume: {path} does not exist (the first epoch never finished); "
                        f"start again with --overwrite.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # ours are never torn: written atomically
        raise UserError(f"cannot read checkpoint {path}: it is not a classicnets checkpoint or is damaged "
                        f"({load_failure_reason(error)}); start the run again with --overwrite.") from None


def check_checkpoint_contents(checkpoint: Any, path: Path) -> None:
    """A file torch could read is not yet one of ours: every key :func:`load_checkpoint`'s
    callers use must be there, with the progress record a mapping."""
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing or not isinstance(checkpoint["progress"], dict) or not isinstance(checkpoint["model"], dict):
        raise UserError(f"cannot resume: {path} is not a classicnets checkpoint (it lacks "
                        f"{', '.join(missing) or 'a readable progress record'}); start the run again with "
                        f"--overwrite.")


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states as weights_only-safe values."""
    version, internal, gauss_next = random.getstate()
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    # CUDA states are restored only onto the same number of GPUs; a run resumed on the
    # CPU or on a different machine simply continues with fresh GPU generators.
    if state["cuda"] and torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda"]):
        torch.cuda.set_rng_state_all(state["cuda"])


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
