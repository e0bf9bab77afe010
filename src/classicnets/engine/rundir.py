"""The run directory: naming it, refusing to clobber it, making sure it is writable."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..errors import UserError
from .checkpoint import BEST_WEIGHTS, LAST_CHECKPOINT

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"
CONFUSION_FILE = "confusion_matrix.png"
SUMMARY_FILE = "summary.json"
# The pending best weights of an epoch whose checkpoint is not yet committed (see loop.py).
PENDING_BEST = ".best.safetensors.pending"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, BEST_WEIGHTS, LAST_CHECKPOINT, CURVES_FILE,
             CONFUSION_FILE, SUMMARY_FILE, PENDING_BEST)


def default_run_dir(model: str, dataset: str) -> Path:
    from ..data.photos import dataset_slug  # folder:/a/b/photos must not become nested folders

    return Path("runs") / f"{model}-{dataset_slug(dataset)}-{time.strftime('%Y%m%d-%H%M%S')}"


def claim_default_run_dir(model: str, dataset: str) -> Path:
    """Create and return a new, empty ``runs/<model>-<dataset>-<time>[-N]``.

    Created exclusively, so runs started in the same second never share a directory.
    """
    base = default_run_dir(model, dataset)
    base.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        candidate = base if attempt == 1 else base.with_name(f"{base.name}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise UserError(f"could not find a free run directory name next to {base}; pass --out.")


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> Path:
    """Create (or, resuming, find) ``run_dir`` and check that files can be written in it.

    A directory that exists and is not empty is refused unless resuming or
    ``overwrite``. Overwriting deletes nothing here: the training loop calls
    :func:`clear_run_files` once the new run has set up, so a setting that fails on the way
    keeps the old results.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"output path {run_dir} is a file, not a directory.")
    if resume:
        if not run_dir.is_dir():
            raise UserError(f"cannot resume: run directory {run_dir} does not exist.")
        remove_stale_temp_files(run_dir)
    elif run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            raise UserError(f"run directory {run_dir} already exists; pass --overwrite to replace its results "
                            f"or --resume {run_dir} to continue it.")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write to output directory {run_dir} ({error.strerror or error}).") from None
    return run_dir


def clear_run_files(run_dir: Path, names: tuple[str, ...] = RUN_FILES) -> None:
    """Delete the files a run writes (nothing else in the directory)."""
    for name in names:
        (run_dir / name).unlink(missing_ok=True)


def remove_stale_temp_files(run_dir: Path) -> None:
    """Temporary files of atomic writes that a killed process never renamed."""
    for name in RUN_FILES:
        for stale in run_dir.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
