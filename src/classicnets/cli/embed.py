"""``classicnets embed``: penultimate-layer features of a run, mapped to 2-D by PCA and t-SNE."""

from __future__ import annotations

import argparse

from .common import (add_run_data_arguments, bounded_seed, non_empty, positive_int, safe_output_folder,
                     weights_file)

EPILOG = """\
features: what the network's last layer reads, as each network declares it: VGG's 4096-d
second FC layer (after its ReLU), GoogLeNet's 1024-d globally pooled inception 5b output,
a ResNet's or Inception v3's globally pooled features, LeNet-5's 84 F6 states.

outputs in --out (default RUN_DIR/embed-SPLIT): embeddings.npz (features [N, D], labels [N],
class_names; numpy.load reads it), pca.png and tsne.png (one point per image, coloured by
its true class). t-SNE first reduces the features to 50 dimensions with PCA; it takes about
a minute for 5,000 images on two CPU cores.

--dataset must have the run's classes, by name and in order; --map-classes-by-position
takes another dataset's i-th class for the run's i-th, and says so (the points keep the
run's class names).

exit status: 0 done; 2 bad input (missing run or data, bad option, class names that differ
from the run's, features that are NaN or inf, an output that would replace a run's own
file or an image).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "embed", help="penultimate-layer features with t-SNE and PCA plots",
        description="Save the penultimate-layer features of a run's images and draw 2-D t-SNE and PCA "
                    "maps coloured by class.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_data_arguments(p, dataset_help="use this dataset instead of the run's (same class names, same order)")
    p.add_argument("--limit", type=positive_int, default=2000, metavar="N",
                   help="the first N images of the split (default 2000)")
    p.add_argument("--methods", type=_methods, default=("pca", "tsne"), metavar="M,...",
                   help="projections: pca, tsne or both (default pca,tsne)")
    p.add_argument("--seed", type=bounded_seed, default=0, help="for PCA's solver and t-SNE (default 0)")
    p.add_argument("--out", type=non_empty, metavar="DIR", help="output directory")
    p.set_defaults(run=run)


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(dict.fromkeys(part.strip() for part in text.split(",")))
    unknown = [m for m in methods if m not in ("pca", "tsne")]
    if unknown or not methods:
        raise argparse.ArgumentTypeError(f"choose from pca and tsne, got {text!r}")
    return methods


def run(args: argparse.Namespace) -> int:
    from ..analysis.embed import EMBEDDINGS_FILE, embedding_maps, extract_embeddings, save_embeddings
    from ..analysis.figures import output_dir
    from ..analysis.run_data import load_run_split, run_home
    from ..engine.checkpoint import load_run
    from ..device import resolve_device

    device = resolve_device(args.device)
    weights = str(weights_file(args.run_dir))
    model, metadata = load_run(args.run_dir, device=device)
    out_dir = safe_output_folder(args.out or run_home(args.run_dir) / f"embed-{args.split}",
                                 [EMBEDDINGS_FILE, *(f"{method}.png" for method in args.methods)], [weights])
    output_dir(out_dir)
    split = load_run_split(args.run_dir, metadata, args.split, image_size=int(metadata["image_size"]),
                           device=device, batch_size=args.batch_size, dataset=args.dataset,
                           data_dir=args.data_dir, limit=args.limit,
                           map_classes_by_position=args.map_classes_by_position)
    if split.class_mapping is not None:
        print(split.mapping_note())
    embeddings = extract_embeddings(model, split.batches, weights=weights,
                                    data=f"the {split.dataset} {args.split} images")
    written = [save_embeddings(out_dir / EMBEDDINGS_FILE, embeddings, split.class_names)]
    print(f"{embeddings.features.shape[0]:,} {split.dataset} {args.split} images -> "
          f"{embeddings.features.shape[1]}-d penultimate features of {metadata['model']}")
    mapped = " (classes mapped by position)" if split.class_mapping is not None else ""
    title = f"{metadata['model']} penultimate features, {split.dataset} {args.split}{mapped}"
    written += embedding_maps(out_dir, embeddings, split.class_names, title, args.methods, args.seed).values()
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0
