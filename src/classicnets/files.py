"""Writing files so that no failure leaves a torn one: the project's one atomic writer.

Every file classicnets writes (checkpoints, weights, ported weights, exports, manifests,
reports, the photo cache's small files) goes through :func:`atomic_write`: a temporary file
in the same directory, flushed and fsync'ed, then ``os.replace``d over the old one, so a
kill at any moment leaves either the old or the new file, never a mix.

Before a command writes, :func:`refuse_overwrite` and :func:`refuse_overwrite_in` check that
its output replaces nothing it must keep: what it reads, a run's own files, a photo.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from .errors import UserError


def temp_path_for(path: Path) -> Path:
    """The hidden temporary name beside ``path`` (same directory: the rename stays atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then swap it in."""
    path = Path(path)
    temp = temp_path_for(path)
    try:
        with open(temp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)  # make the rename itself durable


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """For writers that want a file name rather than a handle (the ONNX exporter, a NumPy
    memory map): yields a temporary path beside ``path``; when the block ends without error
    the file is fsync'ed and renamed over ``path``, otherwise removed. ``suffix`` keeps an
    extension the writer insists on (``.npy``)."""
    path = Path(path)
    temp = temp_path_for(path).with_name(temp_path_for(path).name + suffix)
    try:
        yield temp
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_directory(path.parent)


def replace_file(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename an already complete ``source`` over ``target`` and make the rename durable."""
    os.replace(source, target)
    fsync_directory(Path(target).parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- outputs that replace nothing

# The suffixes of image files: an existing one may be a photo of a dataset (data/image_io.py
# reads the same set), so no output is written over it.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# The "Software" tag of the PNGs classicnets draws: matplotlib's (every chart) and our own
# (the Grad-CAM overlays). Such a figure may be drawn again in its place.
FIGURE_SOFTWARE = ("Matplotlib", "classicnets")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file or folder: equal once resolved (symlinks, ``..``), or,
    when both exist, one inode (hard links, case-insensitive filesystems)."""
    return _KeptPaths({b: ""}).what(a) is not None


class _KeptPaths:
    """Paths to keep, indexed by resolved name and by inode, so that checking many outputs
    against many inputs (predict's photos) takes one look-up each. A path given twice keeps
    its last description."""

    def __init__(self, keep: Mapping[str | os.PathLike, str]) -> None:
        self.by_name: dict[str, str] = {}
        self.by_inode: dict[tuple[int, int], str] = {}
        for path, what in keep.items():
            self.by_name[_resolved_name(path)] = what
            if (inode := _inode(path)) is not None:
                self.by_inode[inode] = what

    def what(self, path: str | os.PathLike) -> str | None:
        """What ``path`` is among the kept paths, or None."""
        found = self.by_name.get(_resolved_name(path))
        if found is None and (inode := _inode(path)) is not None:
            found = self.by_inode.get(inode)
        return found


def _resolved_name(path: str | os.PathLike) -> str:
    return os.path.normcase(Path(path).resolve())


def _inode(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:  # missing, or unreadable: only its name can match
        return None
    return status.st_dev, status.st_ino


def is_drawn_figure(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a PNG drawn by classicnets (its Software text chunk says so), not a photo.

    Only the chunks before the pixel data are read: that is where the tag is written.
    """
    try:
        with open(path, "rb") as handle:
            if handle.read(8) != PNG_SIGNATURE:
                return False
            while len(head := handle.read(8)) == 8:
                length, kind = int.from_bytes(head[:4], "big"), head[4:]
                if kind in (b"IDAT", b"IEND"):
                    return False
                if kind != b"tEXt" or length > 4096:
                    handle.seek(length + 4, os.SEEK_CUR)  # the data and its CRC
                    continue
                keyword, _, text = handle.read(length).partition(b"\0")
                handle.seek(4, os.SEEK_CUR)
                if keyword == b"Software":
                    return text.decode("latin-1").startswith(FIGURE_SOFTWARE)
    except OSError:
        return False
    return False


def overwrite_refusal(target: str | os.PathLike, keep: Mapping[str | os.PathLike, str] | _KeptPaths, *,
                      figure: bool = False) -> str | None:
    """What writing ``target`` would destroy (a phrase such as "the run's own config.yaml in
    runs/a"), or None when it destroys nothing that must be kept.

    ``keep`` maps the paths a command must leave alone (what it reads, a run's own files) to
    what they are; they are kept whether or not they exist yet. An existing image is kept too,
    as it may be a photo of a dataset, unless ``figure`` (the output is a PNG figure) and it is
    a figure classicnets drew, so that a command can be run again over its own results.
    """
    kept = keep if isinstance(keep, _KeptPaths) else _KeptPaths(keep)
    if (what := kept.what(target)) is not None:
        return what
    target = Path(target)
    if target.is_file() and target.suffix.lower() in IMAGE_SUFFIXES and not (figure and is_drawn_figure(target)):
        return f"the image {target}"
    return None


def refuse_overwrite(target: str | os.PathLike, keep: Mapping[str | os.PathLike, str], *, option: str = "--out",
                     figure: bool = False, advice: str = "choose another path") -> Path:
    """``target`` when writing it destroys nothing (see :func:`overwrite_refusal`); else a
    UserError naming the option, the path, what it would overwrite and ``advice``."""
    reason = overwrite_refusal(target, keep, figure=figure)
    if reason is not None:
        raise UserError(f"{option} {target} would overwrite {reason}; {advice}.")
    return Path(target)


def refuse_overwrite_in(folder: str | os.PathLike, names: Iterable[str], keep: Mapping[str | os.PathLike, str], *,
                        option: str = "--out", advice: str = "choose another folder") -> Path:
    """``folder`` when writing each of ``names`` into it destroys nothing; else a UserError.

    The ``.png`` names are the command's figures: they may replace figures classicnets drew.
    """
    kept = _KeptPaths(keep)
    for name in names:
        reason = overwrite_refusal(Path(folder) / name, kept, figure=name.lower().endswith(".png"))
        if reason is not None:
            raise UserError(f"{option} {folder} would overwrite {reason}; {advice}.")
    return Path(folder)
