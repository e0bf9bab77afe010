"""Decode a photo dataset once, at training resolution, and keep it as one uint8 array.

JPEG decoding costs more than a training step of a small network, so photos are
decoded once (in a thread pool), scaled so the shorter side is the training size,
centre-cropped square, and stored as ``[N, 3, S, S]`` uint8 in a ``.npy`` file in the
cache folder. The file name is a hash of the image list (path, size, modification time
of every file) and the resolution, so any change to the data makes a new cache and a
rerun with the same data loads the array straight back. Training then gathers batches
from that array (on the GPU when it fits) and augments them there.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import UserError
from ..files import atomic_output
from ..files import atomic_write_text as write_file_atomically
from .image_io import MAX_IMAGE_PIXELS, BadImageError, load_rgb, resize_center_crop
from .manifest import ImageList

log = logging.getLogger(__name__)

CACHE_VERSION = "photos-v1"  # bump when the decode/resize recipe changes


def cache_root() -> Path:
    """``$CLASSICNETS_CACHE``, else ``$XDG_CACHE_HOME/classicnets``, else ``~/.cache/classicnets``."""
    if os.environ.get("CLASSICNETS_CACHE"):
        return Path(os.environ["CLASSICNETS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "classicnets"


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`classicnets.files.atomic_write_text`, creating the cache folder first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(path, text)


def images_key(images: ImageList, *extra: object) -> str:
    """A hash of the files (path, size, mtime) in order, plus ``extra`` settings."""
    digest = hashlib.sha256(repr((CACHE_VERSION, str(images.root.resolve()), extra)).encode())
    for rel in images.paths:
        info = (images.root / rel).stat()
        digest.update(f"\n{rel}\t{info.st_size}\t{info.st_mtime_ns}".encode())
    return digest.hexdigest()


def load_photos(images: ImageList, size: int, *, workers: int = 2, cache_dir: Path | None = None,
                progress: bool = True, max_pixels: int = MAX_IMAGE_PIXELS) -> torch.Tensor:
    """uint8 ``[N, 3, size, size]``: every image scaled (shorter side) and centre-cropped."""
    cache_dir = cache_dir or cache_root()
    path = cache_dir / f"photos-{images_key(images, size)[:24]}-{size}px.npy"
    cached = _read_cached(path, (len(images), 3, size, size))
    if cached is not None:
        return cached
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        return _decode_to_file(images, size, path, workers, progress, max_pixels)
    except OSError as error:  # no room or no permission: decode into memory, just without reuse
        log.warning("cannot write the photo cache %s (%s); decoding in memory", path, error.strerror)
        array = np.empty((len(images), 3, size, size), dtype=np.uint8)
        _decode_into(array, images, size, workers, progress, max_pixels)
        return torch.from_numpy(array)


def _read_cached(path: Path, shape: tuple[int, ...]) -> torch.Tensor | None:
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if array.shape != shape or array.dtype != np.uint8:
        return None
    return torch.from_numpy(np.array(array))  # into memory: training reads it at random


def _decode_to_file(images: ImageList, size: int, path: Path, workers: int, progress: bool,
                    max_pixels: int) -> torch.Tensor:
    shape = (len(images), 3, size, size)
    if shutil.disk_usage(path.parent).free < np.prod(shape):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path.parent))
    with atomic_output(path, suffix=".npy") as temp:  # readers see a complete cache or none
        array = np.lib.format.open_memmap(temp, mode="w+", dtype=np.uint8, shape=shape)
        try:
            reserve_disk_space(temp)
            _decode_into(array, images, size, workers, progress, max_pixels)
            array.flush()
        finally:
            del array  # the map closes before the file is renamed or removed
    return torch.from_numpy(np.load(path))


def reserve_disk_space(path: Path) -> None:
    """Allocate every block of ``path`` now. ``open_memmap`` makes a sparse file, and a write
    through the map that then finds the disk full kills the process with SIGBUS instead of
    raising an error (seen on a full tmpfs), so the room must be taken before decoding."""
    if not hasattr(os, "posix_fallocate"):  # macOS and Windows: the free-space check alone
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # filesystems that cannot preallocate
            raise
    finally:
        os.close(fd)


def _decode_into(array: np.ndarray, images: ImageList, size: int, workers: int, progress: bool,
                 max_pixels: int) -> None:
    def decode(position: int) -> None:
        try:
            image = load_rgb(images.root / images.paths[position], max_pixels)
        except BadImageError as error:
            raise UserError(f"cannot decode {images.root / images.paths[position]}: {error}.") from None
        array[position] = resize_center_crop(image, size).numpy()

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        done = pool.map(decode, range(len(images)))
        for _ in tqdm(done, total=len(images), desc=f"decoding photos at {size} px", unit="img",
                      disable=not progress, leave=False):
            pass
