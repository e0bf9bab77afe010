"""Check every image of a photo dataset before training starts, and remember the answers.

A bad file found in epoch 3 of a long run wastes the run; one found before epoch 1
costs a message. Every file is decoded once, strictly, in a thread pool (PIL and
libjpeg release the GIL while decoding). Results are cached per dataset root and keyed
by each file's path, size and modification time, so a second run only stats the files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..errors import UserError
from .image_io import MAX_IMAGE_PIXELS, BadImageError, verify_image
from .manifest import ImageList
from .photo_cache import atomic_write_text, cache_root

log = logging.getLogger(__name__)

SHOWN_IN_MESSAGE = 20  # bad files named in the error itself; all of them go to a file
# The rules a cached verdict was reached under; change it whenever image_io refuses new
# kinds of file, so verdicts cached under older rules are reached again.
CHECK_RULES = "v2: decodes, pixels, min side, aspect ratio"


@dataclass
class CheckReport:
    checked: int  # files looked at in total
    decoded: int  # of those, decoded now (the rest came from the cache)
    bad: dict[str, str]  # relative path -> why it cannot be used


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def check_images(images: ImageList, *, max_pixels: int = MAX_IMAGE_PIXELS, workers: int | None = None,
                 cache_dir: Path | None = None, progress: bool = True) -> CheckReport:
    """Decode every file of ``images`` (or recall the verdict from the cache)."""
    cache_file = _cache_file(images.root, cache_dir)
    cached = _load_cache(cache_file, max_pixels)
    verdicts: dict[str, str | None] = {}
    fresh: list[tuple[str, list[int]]] = []
    stamps: dict[str, list[int]] = {}
    for rel in images.paths:
        stamp = _stamp(images.root / rel)
        stamps[rel] = stamp
        entry = cached.get(rel)
        if entry is not None and entry[:2] == stamp:
            verdicts[rel] = entry[2]
        else:
            fresh.append((rel, stamp))

    def verdict(rel: str) -> str | None:
        try:
            verify_image(images.root / rel, max_pixels)
        except BadImageError as error:
            return str(error)
        return None

    if fresh:
        with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
            results = pool.map(verdict, [rel for rel, _ in fresh])
            bar = tqdm(results, total=len(fresh), desc="checking images", unit="img",
                       disable=not progress, leave=False)
            for (rel, _), result in zip(fresh, bar):
                verdicts[rel] = result
        _save_cache(cache_file, max_pixels, {**cached, **{rel: [*stamps[rel], verdicts[rel]] for rel, _ in fresh}})
    bad = {rel: why for rel, why in verdicts.items() if why is not None}
    return CheckReport(checked=len(images), decoded=len(fresh), bad=bad)


def drop_bad_images(images: ImageList, report: CheckReport, *, skip_bad: bool,
                    cache_dir: Path | None = None) -> ImageList:
    """``images`` without the bad files if ``skip_bad``; otherwise a UserError naming them."""
    if not report.bad:
        return images
    if not skip_bad:
        raise UserError(_bad_files_message(images.root, report.bad, cache_dir))
    log.warning("skipping %d bad image file(s) of %d in %s (for example %s: %s)", len(report.bad),
                report.checked, images.root, *next(iter(sorted(report.bad.items()))))
    kept = images.select([i for i, rel in enumerate(images.paths) if rel not in report.bad])
    # Where the layout already says which images train, a class must keep training images.
    already_split = any(split is not None for split in kept.splits)
    trainable = {label for label, split in zip(kept.labels, kept.splits) if split == "train" or not already_split}
    emptied = sorted(set(range(len(images.class_names))) - trainable)
    if emptied:
        names = ", ".join(images.class_names[c] for c in emptied)
        where = "training images" if already_split else "usable images"
        raise UserError(f"class(es) {names} have no {where} once the bad files are left out.")
    return kept


def _bad_files_message(root: Path, bad: dict[str, str], cache_dir: Path | None) -> str:
    listed = sorted(bad.items())
    shown = "; ".join(f"{rel} ({why})" for rel, why in listed[:SHOWN_IN_MESSAGE])
    more = ""
    if len(listed) > SHOWN_IN_MESSAGE:
        report_file = _cache_file(root, cache_dir).with_suffix(".bad.txt")
        try:
            atomic_write_text(report_file, "".join(f"{root / rel}\t{why}\n" for rel, why in listed))
            more = f"; and {len(listed) - SHOWN_IN_MESSAGE} more, all listed in {report_file}"
        except OSError:  # an unwritable cache folder: the message itself must then name them all
            shown = "; ".join(f"{rel} ({why})" for rel, why in listed)
    return (f"{len(listed)} bad image file(s) in {root}: {shown}{more}; remove or replace them, "
            f"or pass --skip-bad to leave them out.")


def _stamp(path: Path) -> list[int]:
    try:
        info = path.stat()
    except OSError:
        return [-1, -1]
    return [info.st_size, info.st_mtime_ns]


def _cache_file(root: Path, cache_dir: Path | None) -> Path:
    key = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return (cache_dir or cache_root()) / f"image-checks-{key}.json"


def _load_cache(path: Path, max_pixels: int) -> dict[str, list]:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # no cache yet, or a damaged one: check everything again
    if not isinstance(content, dict) or content.get("max_pixels") != max_pixels or content.get("rules") != CHECK_RULES:
        return {}
    entries = content.get("entries")
    return entries if isinstance(entries, dict) else {}


def _save_cache(path: Path, max_pixels: int, entries: dict[str, list]) -> None:
    try:
        atomic_write_text(path, json.dumps({"rules": CHECK_RULES, "max_pixels": max_pixels, "entries": entries}))
    except OSError as error:  # a read-only cache only costs speed next time
        log.warning("could not save the image check cache %s (%s)", path, error.strerror)
