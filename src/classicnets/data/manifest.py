"""Photo datasets as lists of (relative path, label), their splits, and split manifests.

Two on-disk layouts are read as they are:

* Kaggle's Dogs-vs-Cats: ``ROOT/train/cat.N.jpg`` and ``ROOT/train/dog.N.jpg``, the label
  in the file name. Kaggle's unlabeled ``test1/`` is never read.
* A class-per-subfolder tree (torchvision's ImageFolder), ``ROOT/CLASS/.../IMAGE``, or a
  tree that is already split: ``ROOT/{train,val,test}/CLASS/.../IMAGE`` (``valid/`` or
  ``validation/`` also name the validation folder).

A split manifest is a CSV file with the columns ``split,label,path`` (paths relative to
the dataset root, with forward slashes), so the same split can be used from any checkout
and read by a person. ``classicnets split`` writes one; training and evaluation read it.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import torch

from ..errors import UserError
from ..files import atomic_write_bytes
from .image_io import IMAGE_EXTENSIONS, is_image_file
from .splits import derive_seed, stratified_split

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MANIFEST_NAME = "classicnets-split.csv"
MANIFEST_COLUMNS = ("split", "label", "path")
# The split every photo dataset gets when it has no manifest: the same as
# `classicnets split DATASET` with its defaults.
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.1
DEFAULT_SPLIT_SEED = 0

KAGGLE_CLASSES = ["cat", "dog"]
_KAGGLE_NAME = re.compile(r"^(cat|dog)\.\d+\.(jpe?g|png)$", re.IGNORECASE)


@dataclass(frozen=True)
class ImageList:
    """Image files under ``root`` with integer labels indexing ``class_names``."""

    root: Path
    paths: list[str]  # relative to root, forward slashes
    labels: list[int]
    class_names: list[str]
    splits: list[str | None]  # the split each image belongs to, None where the layout has none

    def __len__(self) -> int:
        return len(self.paths)

    def files(self) -> list[Path]:
        return [self.root / p for p in self.paths]

    def select(self, positions: Sequence[int]) -> "ImageList":
        return replace(self, paths=[self.paths[i] for i in positions], labels=[self.labels[i] for i in positions],
                       splits=[self.splits[i] for i in positions])

    def labels_tensor(self) -> torch.Tensor:
        return torch.tensor(self.labels, dtype=torch.int64)


# ----------------------------------------------------------------------------- Kaggle layout

def kaggle_root(data_dir: Path) -> Path:
    """The folder holding ``train/``: ``data_dir`` itself or ``data_dir/cats-vs-dogs``."""
    for candidate in (data_dir, data_dir / "cats-vs-dogs", data_dir / "dogs-vs-cats"):
        if (candidate / "train").is_dir():
            return candidate
    raise UserError(
        f"no Dogs-vs-Cats photos under {data_dir}: put Kaggle's train/cat.N.jpg and train/dog.N.jpg "
        f"in {data_dir / 'cats-vs-dogs'} or pass --data-dir pointing at the folder that holds train/."
    )


def list_kaggle(root: Path) -> ImageList:
    """``root/train/{cat,dog}.N.jpg``; other names in ``train/`` are ignored with a warning."""
    paths, labels, ignored = [], [], []
    for file in sorted((root / "train").iterdir()):
        if not file.is_file() or file.name.startswith("."):
            continue
        match = _KAGGLE_NAME.match(file.name)
        if match is None:
            ignored.append(file.name)
            continue
        paths.append(f"train/{file.name}")
        labels.append(KAGGLE_CLASSES.index(match.group(1).lower()))
    if ignored:
        shown = ", ".join(ignored[:5]) + (", ..." if len(ignored) > 5 else "")
        log.warning("ignored %d file(s) in %s whose names are not cat.N.jpg or dog.N.jpg: %s",
                    len(ignored), root / "train", shown)
    present = sorted(set(labels))
    if len(present) < 2:
        have = f"only {KAGGLE_CLASSES[present[0]]} photos" if present else "no cat.N.jpg or dog.N.jpg photos"
        raise UserError(f"{root / 'train'} has {have}; Dogs-vs-Cats needs both cat.N.jpg and dog.N.jpg files.")
    return ImageList(root, paths, labels, list(KAGGLE_CLASSES), [None] * len(paths))


# ----------------------------------------------------------------------------- folder layouts

def list_folder(root: Path) -> ImageList:
    """A class-per-subfolder tree, or one already split into train/val/test subfolders.

    A ``train/`` folder (any case) marks a split tree, so split names are never taken for
    class names; other top-level folders beside the split folders are left out, with a warning.
    """
    if root.is_file():
        raise UserError(f"image folder {root} is a file; folder:PATH needs a folder of class subfolders.")
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist.")
    split_folders = _split_folders(root)
    if split_folders is not None:
        others = [d.name for d in _subdirs(root) if d not in split_folders.values()]
        if others:
            log.warning("ignored folder(s) %s in %s: a tree split into train/val/test is read from "
                        "those folders only", ", ".join(others), root)
        return _list_split_tree(root, split_folders)
    class_names, per_class = _scan_classes(root, where=str(root))
    paths, labels = _flatten(root, per_class)
    return ImageList(root, paths, labels, class_names, [None] * len(paths))


# Folder names read as a split, with the usual spellings of the validation folder.
SPLIT_FOLDER_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def _split_folders(root: Path) -> dict[str, Path] | None:
    """``{split: folder}`` when ``root`` holds a ``train/`` folder, else None (a class-per-folder tree)."""
    found: dict[str, Path] = {}
    for folder in _subdirs(root):
        split = SPLIT_FOLDER_NAMES.get(folder.name.lower())
        if split is None:
            continue
        if split in found:
            raise UserError(f"{root} has both {found[split].name}/ and {folder.name}/; keep one folder for "
                            f"the {split} split.")
        found[split] = folder
    return found if "train" in found else None


def _list_split_tree(root: Path, split_folders: dict[str, Path]) -> ImageList:
    for folder in split_folders.values():
        loose = [p.name for p in folder.iterdir() if p.is_file() and is_image_file(p)]
        if loose:
            raise UserError(f"{folder} holds {len(loose)} image(s) outside any class folder (e.g. {loose[0]}); "
                            f"put them in {folder}/CLASS_NAME/ so they have a label.")
    train_folder = split_folders["train"]
    class_names, train_files = _scan_classes(train_folder, where=str(train_folder))
    index = {name: i for i, name in enumerate(class_names)}
    paths, labels = _flatten(root, train_files)
    splits: list[str | None] = ["train"] * len(paths)
    for split in ("val", "test"):
        folder = split_folders.get(split)
        if folder is None:
            continue
        files = {d.name: _images_under(d) for d in _subdirs(folder)}
        strangers = sorted(set(files) - set(index))
        if strangers:
            raise UserError(f"{folder} has class folder(s) {', '.join(strangers)} that {train_folder} "
                            f"lacks; every class needs training images.")
        split_paths, split_labels = _flatten(root, {name: files[name] for name in class_names if name in files},
                                             index)
        paths += split_paths
        labels += split_labels
        splits += [split] * len(split_paths)
    return ImageList(root, paths, labels, class_names, splits)


def _scan_classes(folder: Path, where: str) -> tuple[list[str], dict[str, list[Path]]]:
    classes = _subdirs(folder)
    if not classes:
        raise UserError(f"{where} has no class subfolders; expected {where}/CLASS_NAME/IMAGE files.")
    per_class = {d.name: _images_under(d) for d in classes}
    empty = [name for name, files in per_class.items() if not files]
    if empty:
        raise UserError(f"class folder(s) {', '.join(empty)} in {where} have no images "
                        f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))}).")
    if len(per_class) < 2:
        raise UserError(f"{where} has only one class folder ({classes[0].name}); a classifier needs at least two.")
    return sorted(per_class), per_class


def _flatten(root: Path, per_class: dict[str, list[Path]],
             index: dict[str, int] | None = None) -> tuple[list[str], list[int]]:
    index = index or {name: i for i, name in enumerate(sorted(per_class))}
    paths, labels = [], []
    for name, files in per_class.items():
        paths += [f.relative_to(root).as_posix() for f in files]
        labels += [index[name]] * len(files)
    return paths, labels


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


# ----------------------------------------------------------------------------- splitting

def make_split(images: ImageList, val: float = DEFAULT_VAL_FRACTION, test: float = DEFAULT_TEST_FRACTION,
               seed: int = DEFAULT_SPLIT_SEED) -> list[str]:
    """The split of every image: stratified, seeded, reproducible.

    Images the layout already assigns keep their split. Unassigned images are cut into
    ``test`` and ``val`` fractions of their count (each class in proportion), the rest
    train. In a train/val/test tree a missing val or test part is cut from train.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise UserError(f"val and test fractions must be in [0, 1) and leave images to train on, got {val} and {test}.")
    assignment = [s if s is not None else "train" for s in images.splits]
    present = set(images.splits)
    pool = [i for i, s in enumerate(images.splits) if s in (None, "train")]
    labels = images.labels_tensor()
    pool_size = len(pool)
    for split, fraction in (("test", test), ("val", val)):
        if split in present:
            continue
        size = round(fraction * pool_size)
        keep, taken = stratified_split(labels[pool], size, derive_seed(seed, "split", split))
        for position in taken.tolist():
            assignment[pool[position]] = split
        pool = [pool[p] for p in keep.tolist()]
    missing = sorted(set(range(len(images.class_names))) - {images.labels[i] for i in pool})
    if missing:
        names = ", ".join(images.class_names[c] for c in missing)
        raise UserError(f"class(es) {names} have no training images left after the split; lower --val/--test.")
    return assignment


def split_positions(assignment: Sequence[str]) -> dict[str, list[int]]:
    return {split: [i for i, s in enumerate(assignment) if s == split] for split in SPLITS}


# ----------------------------------------------------------------------------- manifests

def default_manifest_path(root: Path) -> Path:
    return root / MANIFEST_NAME


def write_manifest(path: Path, images: ImageList, assignment: Sequence[str]) -> None:
    """CSV ``split,label,path`` sorted by split then path; written atomically."""
    order = sorted(range(len(images)), key=lambda i: (SPLITS.index(assignment[i]), images.paths[i]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for i in order:
        writer.writerow((assignment[i], images.class_names[images.labels[i]], images.paths[i]))
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue().encode())
    except OSError as error:
        raise UserError(f"cannot write the split manifest {path} ({error.strerror}); choose another place "
                        f"with --out.") from None


def read_manifest(path: Path, root: Path, known_classes: Sequence[str] | None = None) -> ImageList:
    """The images a manifest lists, with their splits; paths are resolved under ``root``.

    ``known_classes``: the dataset's classes (from its layout); a label outside them is
    refused, so a misspelt class never becomes a class of its own.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"split manifest {path} is a folder; give the CSV file that classicnets split wrote.")
    if not path.is_file():
        raise UserError(f"split manifest {path} does not exist.")
    try:
        rows = _manifest_rows(path, root, known_classes)
    except UnicodeDecodeError:
        raise UserError(f"split manifest {path} is not a text (CSV) file.") from None
    class_names = sorted({label for _, label, _ in rows})
    if len(class_names) < 2:
        raise UserError(f"split manifest {path} names {len(class_names)} class(es); a classifier needs at least two.")
    missing = [p for _, _, p in rows if not (root / p).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise UserError(f"{len(missing)} file(s) listed in {path} are not under {root}: {shown}")
    index = {name: i for i, name in enumerate(class_names)}
    return ImageList(root, [p for _, _, p in rows], [index[label] for _, label, _ in rows], class_names,
                     [split for split, _, _ in rows])


def _manifest_rows(path: Path, root: Path, known_classes: Sequence[str] | None) -> list[tuple[str, str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(header) != MANIFEST_COLUMNS:
            raise UserError(f"{path} is not a split manifest: its first line must be {','.join(MANIFEST_COLUMNS)}.")
        rows, seen = [], set()
        known = None if known_classes is None else set(known_classes)
        for line, row in enumerate(reader, start=2):
            if len(row) != 3 or not row[1] or not row[2]:
                raise UserError(f"{path} line {line} is not 'split,label,path' with split one of "
                                f"{', '.join(SPLITS)}: {','.join(row)!r}.")
            if row[0] not in SPLITS:
                raise UserError(f"{path} line {line} is not 'split,label,path' with split one of "
                                f"{', '.join(SPLITS)}: its split {row[0]!r} is none of them.")
            if known is not None and row[1] not in known:
                raise UserError(f"{path} line {line}: label {row[1]!r} is not a class of {root} "
                                f"({', '.join(known_classes)}).")
            if row[2] in seen:
                raise UserError(f"{path} line {line} lists {row[2]} a second time.")
            seen.add(row[2])
            rows.append((row[0], row[1], row[2]))
    if not rows:
        raise UserError(f"split manifest {path} lists no images.")
    return rows


def copy_split(images: ImageList, assignment: Sequence[str], out_dir: Path) -> dict[str, int]:
    """Materialise ``out_dir/{train,val,test}/CLASS/FILE`` (a ``folder:`` dataset); returns counts."""
    out_dir = Path(out_dir)
    check_copy_folder(out_dir)
    counts = dict.fromkeys(SPLITS, 0)
    used: set[Path] = set()
    for rel, label, split in zip(images.paths, images.labels, assignment):
        folder = out_dir / split / images.class_names[label]
        target = folder / Path(rel).name
        if target in used:  # the same file name in two source folders: keep both
            target = folder / rel.replace("/", "__")
        used.add(target)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(images.root / rel, target)
        counts[split] += 1
    return counts


def check_copy_folder(out_dir: Path) -> None:
    """Refuse a copy target that is a file or a folder with something in it (the copy
    must not mix with other files); ``classicnets split`` calls this before writing anything."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file; --copy needs a new or empty folder.")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise UserError(f"{out_dir} is not empty; --copy needs a new or empty folder.")
