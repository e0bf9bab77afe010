"""The run directory: naming it, refusing to clobber it, making sure it is writable, and
holding it for one training process at a time (:class:`RunLock`)."""

from __future__ import annotations

import os
import socket
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
# Held by the training process that owns the directory (see RunLock); not a result.
LOCK_FILE = ".train.lock"
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


def check_run_dir_path(run_dir: Path, *, resume: bool) -> None:
    """What the path alone can tell: a file is no run directory, and resuming needs one."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"output path {run_dir} is a file, not a directory.")
    if resume and not run_dir.is_dir():
        raise UserError(f"cannot resume: run directory {run_dir} does not exist.")


def lock_run_dir(run_dir: Path, *, resume: bool) -> "RunLock":
    """Create ``run_dir`` if needed and take its lock (:class:`RunLock`): the first thing a
    training process does there, before it looks at or changes anything in it."""
    run_dir = Path(run_dir)
    check_run_dir_path(run_dir, resume=resume)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot write to output directory {run_dir} ({error.strerror or error}).") from None
    return RunLock.acquire(run_dir)


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> Path:
    """Create (or, resuming, find) ``run_dir`` and check that files can be written in it.

    A directory that exists and holds anything besides its lock is refused unless resuming
    or ``overwrite``. Overwriting deletes nothing here: the training loop calls
    :func:`clear_run_files` once the new run has set up, so a setting that fails on the way
    keeps the old results. A training process calls :func:`lock_run_dir` first.
    """
    run_dir = Path(run_dir)
    check_run_dir_path(run_dir, resume=resume)
    if resume:
        remove_stale_temp_files(run_dir)
    elif run_dir.is_dir() and has_results(run_dir) and not overwrite:
        raise UserError(f"run directory {run_dir} already exists; pass --overwrite to replace its results "
                        f"or --resume {run_dir} to continue it.")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot write to output directory {run_dir} ({error.strerror or error}).") from None
    check_writable(run_dir)
    return run_dir


def has_results(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds anything besides its lock."""
    return any(entry.name != LOCK_FILE for entry in run_dir.iterdir())


def check_writable(run_dir: Path) -> None:
    try:
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write to output directory {run_dir} ({error.strerror or error}).") from None


class RunLock:
    """One training process per run directory, for the life of that process.

    The lock is an advisory ``flock`` on ``LOCK_FILE``, which also holds the owner's pid and
    host for the message a second process gets. The kernel drops a flock when its process
    dies, however it dies, so a lock file left by a dead process is simply taken over.
    Where ``fcntl`` is missing (Windows) the pid in the file decides: a live process keeps
    the directory, a dead one's file is taken over.
    """

    def __init__(self, path: Path, handle: int) -> None:
        self.path, self.handle = path, handle

    @classmethod
    def acquire(cls, run_dir: Path) -> "RunLock":
        path = Path(run_dir) / LOCK_FILE
        for _ in range(10):  # retried only when the owner released the file while we opened it
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(handle, path):
                owner = _read_owner(handle)
                os.close(handle)
                raise UserError(f"run directory {run_dir} is in use by another training process "
                                f"({owner}); wait for it to finish or stop it, then try again.")
            if _same_file(handle, path):  # not a file its previous owner unlinked meanwhile
                os.ftruncate(handle, 0)
                os.write(handle, f"{os.getpid()} {socket.gethostname()}\n".encode())
                return cls(path, handle)
            os.close(handle)
        raise UserError(f"could not take the lock {path}; another process keeps replacing it.")

    def release(self) -> None:
        if self.handle < 0:
            return
        self.path.unlink(missing_ok=True)  # before the unlock: a waiting process then opens a new file
        os.close(self.handle)
        self.handle = -1


def _try_lock(handle: int, path: Path) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows: no flock; a live owner pid holds the directory
        return not _owner_alive(handle)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _read_owner(handle: int) -> str:
    os.lseek(handle, 0, os.SEEK_SET)
    fields = os.read(handle, 200).decode(errors="replace").split()
    if not fields:
        return "pid unknown"
    host = f" on {fields[1]}" if len(fields) > 1 and fields[1] != socket.gethostname() else ""
    return f"pid {fields[0]}{host}"


def _owner_alive(handle: int) -> bool:
    os.lseek(handle, 0, os.SEEK_SET)
    fields = os.read(handle, 200).decode(errors="replace").split()
    if not fields or not fields[0].isdigit() or int(fields[0]) == os.getpid():
        return False
    try:
        os.kill(int(fields[0]), 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _same_file(handle: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle), os.stat(path))
    except FileNotFoundError:
        return False


def clear_run_files(run_dir: Path, names: tuple[str, ...] = RUN_FILES) -> None:
    """Delete the files a run writes (nothing else in the directory)."""
    for name in names:
        (run_dir / name).unlink(missing_ok=True)


def remove_stale_temp_files(run_dir: Path) -> None:
    """Temporary files of atomic writes that a killed process never renamed."""
    for name in RUN_FILES:
        for stale in run_dir.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
