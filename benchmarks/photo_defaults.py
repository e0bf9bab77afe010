"""Do the defaults learn? Photos from scratch with no recipe: the photo defaults against the
built-in (Fashion-MNIST) defaults that photo datasets had before, per model.

For each model, trains ``classicnets train --model M --dataset D`` twice on the same
images: once with nothing but the size flags (what a new user gets, the photo defaults) and
once with the built-in defaults spelled out. Prints one JSON line per run (test and best
validation accuracy, last training accuracy and loss, process seconds), e.g. the issue's
case, 3,000 photos at 32 px for 4 epochs:

    python benchmarks/photo_defaults.py --data-dir DIR --models googlenet resnet18 vgg11_bn \
        --image-size 32 --subset 3000 --epochs 4
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from benchlib import emit, read_summary, run_checked

# TrainConfig's defaults that photo datasets used before they had their own (the same flags
# as `classicnets train` takes); the built-in photo augmentation was the paper's strength.
BUILT_IN = ["--optimizer", "sgd", "--lr", "0.01", "--weight-decay", "0.0005", "--scheduler", "cosine",
            "--label-smoothing", "0"]
PAPER_AUGMENT = "augment: {scale: [0.25, 1.0], brightness: 0.4, contrast: 0.4, saturation: 0.4}\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--dataset", default="cats-vs-dogs")
    parser.add_argument("--models", nargs="+", default=["googlenet", "resnet18", "vgg11_bn"])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--subset", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-root", type=Path,
                        default=Path("runs") / f"bench-photo-defaults-{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args(argv)

    args.out_root.mkdir(parents=True, exist_ok=True)
    built_in_recipe = args.out_root / "built_in_augment.yaml"
    built_in_recipe.write_text(PAPER_AUGMENT)
    common = ["--dataset", args.dataset, "--data-dir", args.data_dir, "--image-size", str(args.image_size),
              "--subset", str(args.subset), "--epochs", str(args.epochs), "--seed", str(args.seed),
              "--device", "cpu", "--quiet"]
    for model in args.models:
        for label, extra in (("photo defaults", []), ("built-in defaults", ["--recipe", str(built_in_recipe),
                                                                            *BUILT_IN])):
            out = args.out_root / f"{model}-{label.split()[0]}"
            command = [sys.executable, "-m", "classicnets", "train", "--model", model, *common, *extra,
                       "--out", str(out)]
            started = time.perf_counter()
            run_checked(command)
            seconds = time.perf_counter() - started
            summary = read_summary(out)
            with open(out / "metrics.csv", newline="") as file:
                last = list(csv.DictReader(file))[-1]
            emit(model, "test_accuracy", summary["test_accuracy"], summary["device"], command,
                 torch_version=summary["torch_version"], settings=label, image_size=args.image_size,
                 subset=args.subset, epochs=args.epochs, best_val_accuracy=summary["best_val_accuracy"],
                 last_train_accuracy=float(last["train_acc"]), last_train_loss=float(last["train_loss"]),
                 process_seconds=seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
