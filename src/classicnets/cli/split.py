"""``classicnets split``: write a reproducible, stratified train/val/test split manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import fraction, non_empty, non_negative_int, safe_output_file

EPILOG = """\
DATASET is cats-vs-dogs (Kaggle's DIR/train/cat.N.jpg, dog.N.jpg) or folder:PATH (one
subfolder per class, or train/ val/ test/ subfolders, each with one subfolder per class).

The manifest is a CSV file with the columns split,label,path (paths relative to the
dataset root). Its default place, ROOT/classicnets-split.csv, is where training and
evaluation look for it; with --out elsewhere, pass it to them explicitly. Each class is
split in proportion (stratified), and the same seed always gives the same split.

Training needs all three parts, so --val and --test must each take at least one image.

An existing --out is replaced only when it is a split manifest (an earlier split); an
image, a run's own file or any other file is refused.

exit status: 0 written; 2 bad input (unknown dataset, missing folder, one class,
fractions that leave a part empty, unwritable place, an --out that is not a manifest,
a --copy folder that is a file or not empty), all found before the manifest is written.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "split", help="write a stratified train/val/test split manifest for a photo dataset",
        description="Split an image dataset into train, val and test parts, stratified by class and "
                    "seeded, and write the split as a CSV manifest.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=non_empty, metavar="DATASET", help="cats-vs-dogs or folder:PATH")
    p.add_argument("--data-dir", type=non_empty, metavar="DIR",
                   help="data root for cats-vs-dogs (default: $CLASSICNETS_DATA, else ./data); "
                        "DIR or DIR/cats-vs-dogs holds train/")
    p.add_argument("--val", type=fraction, default=0.1, metavar="F", help="validation fraction (default 0.1)")
    p.add_argument("--test", type=fraction, default=0.1, metavar="F", help="test fraction (default 0.1)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="split seed (default 0)")
    p.add_argument("--out", type=non_empty, metavar="CSV", help="manifest path (default ROOT/classicnets-split.csv)")
    p.add_argument("--copy", type=non_empty, metavar="DIR",
                   help="also copy the files into DIR/{train,val,test}/CLASS/, a tree that folder:DIR reads")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data.manifest import copy_split, default_manifest_path, make_split, write_manifest
    from ..data.photos import list_images

    images = list_images(args.dataset, args.data_dir)
    assignment = make_split(images, val=args.val, test=args.test, seed=args.seed)
    check_every_part_has_images(assignment, args.val, args.test)
    out = usable_manifest_path(Path(args.out) if args.out else default_manifest_path(images.root))
    copy_dir = usable_copy_folder(args.copy) if args.copy else None  # before anything is written
    write_manifest(out, images, assignment)
    counts = {split: assignment.count(split) for split in ("train", "val", "test")}
    print(f"wrote {out}: {counts['train']:,} train / {counts['val']:,} val / {counts['test']:,} test images, "
          f"{len(images.class_names)} classes, seed {args.seed}")
    if copy_dir is not None:
        copy_split(images, assignment, copy_dir)
        print(f"copied the files into {args.copy}/{{train,val,test}}/CLASS/ (use --dataset folder:{args.copy})")
    return 0


def check_every_part_has_images(assignment: list[str], val: float, test: float) -> None:
    """Training refuses a manifest with an empty part (it selects on val and reports on
    test), so such a split is refused here rather than when training starts."""
    from ..errors import UserError

    for part, option, share in (("val", "--val", val), ("test", "--test", test)):
        if part not in assignment:
            raise UserError(f"the split has no {part} images ({option} {share:g} of {len(assignment)} images); "
                            f"training needs train, val and test images, so raise {option}.")


def usable_manifest_path(out: Path) -> Path:
    """The manifest path, refused when writing there would replace an image (a photo of the
    dataset, say), a run's own file, or any existing file that is not a split manifest:
    rewriting an earlier split is expected, replacing anything else is not."""
    from ..errors import UserError

    safe_output_file(out)
    if out.is_file() and not looks_like_manifest(out):
        raise UserError(f"--out {out} would overwrite {out}, which is not a split manifest; choose another path.")
    return out


def looks_like_manifest(path: Path) -> bool:
    """An empty file, or one whose first line is the manifest header that write_manifest writes."""
    from ..data.manifest import MANIFEST_COLUMNS

    try:
        with open(path, "rb") as handle:
            first = handle.readline(200).decode("utf-8", "replace").strip()
    except OSError:  # unreadable: nothing shows that it may be replaced
        return False
    return first in ("", ",".join(MANIFEST_COLUMNS))


def usable_copy_folder(folder: str) -> Path:
    """The --copy folder, checked, created and tried for writing, so that a file there, a
    non-empty folder or a place that cannot be written fails before the manifest is written."""
    from ..analysis.figures import output_dir
    from ..data.manifest import check_copy_folder

    check_copy_folder(Path(folder))
    return output_dir(folder)
