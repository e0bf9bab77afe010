"""``classicnets split``: write a reproducible, stratified train/val/test split manifest."""

from __future__ import annotations

import argparse

from .common import fraction, non_negative_int

EPILOG = """\
DATASET is cats-vs-dogs (Kaggle's DIR/train/cat.N.jpg, dog.N.jpg) or folder:PATH (one
subfolder per class, or train/ val/ test/ subfolders, each with one subfolder per class).

The manifest is a CSV file with the columns split,label,path (paths relative to the
dataset root). Its default place, ROOT/classicnets-split.csv, is where training and
evaluation look for it; with --out elsewhere, pass it to them explicitly. Each class is
split in proportion (stratified), and the same seed always gives the same split.

exit status: 0 written; 2 bad input (unknown dataset, missing folder, one class,
fractions that leave nothing to train on, unwritable place).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "split", help="write a stratified train/val/test split manifest for a photo dataset",
        description="Split an image dataset into train, val and test parts, stratified by class and "
                    "seeded, and write the split as a CSV manifest.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", metavar="DATASET", help="cats-vs-dogs or folder:PATH")
    p.add_argument("--data-dir", metavar="DIR", help="data root for cats-vs-dogs (default: $CLASSICNETS_DATA, "
                   "else ./data); DIR or DIR/cats-vs-dogs holds train/")
    p.add_argument("--val", type=fraction, default=0.1, metavar="F", help="validation fraction (default 0.1)")
    p.add_argument("--test", type=fraction, default=0.1, metavar="F", help="test fraction (default 0.1)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="split seed (default 0)")
    p.add_argument("--out", metavar="CSV", help="manifest path (default ROOT/classicnets-split.csv)")
    p.add_argument("--copy", metavar="DIR", help="also copy the files into DIR/{train,val,test}/CLASS/, "
                   "a tree that folder:DIR reads")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.manifest import copy_split, default_manifest_path, make_split, write_manifest
    from ..data.photos import list_images

    images = list_images(args.dataset, args.data_dir)
    assignment = make_split(images, val=args.val, test=args.test, seed=args.seed)
    out = Path(args.out) if args.out else default_manifest_path(images.root)
    write_manifest(out, images, assignment)
    counts = {split: assignment.count(split) for split in ("train", "val", "test")}
    print(f"wrote {out}: {counts['train']:,} train / {counts['val']:,} val / {counts['test']:,} test images, "
          f"{len(images.class_names)} classes, seed {args.seed}")
    if args.copy:
        copy_split(images, assignment, Path(args.copy))
        print(f"copied the files into {args.copy}/{{train,val,test}}/CLASS/ (use --dataset folder:{args.copy})")
    return 0
