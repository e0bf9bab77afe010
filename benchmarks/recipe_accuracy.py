"""Test accuracy of a recipe over several seeds (any recipe, any dataset: its test result).

Trains the recipe once per seed (each run in its own process and run directory) and
prints one JSON line per seed (recipe, seed, test and best validation accuracy, process
seconds from start to printed test result, device, torch), then one with the mean and
standard deviation. Set CLASSICNETS_CACHE to an empty folder to time a photo recipe with
its decoding.

    python benchmarks/recipe_accuracy.py --recipe recipes/fashion_mnist/vgg16_bn.yaml --seeds 0 1 2
    # CPU smoke test: flags after -- go to `classicnets train`
    python benchmarks/recipe_accuracy.py --recipe recipes/fashion_mnist/quickstart_cpu.yaml \
        --seeds 0 1 -- --epochs 1 --subset 300 --image-size 28
    CLASSICNETS_CACHE=$(mktemp -d) python benchmarks/recipe_accuracy.py \
        --recipe recipes/cats_vs_dogs/resnet18_cpu.yaml --seeds 0 -- --data-dir DIR
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from benchlib import RECIPES, emit, passthrough_args, read_summary, run_checked, train_command


def main(argv: list[str]) -> int:
    own, extra = passthrough_args(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(RECIPES / "vgg16_bn.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out-root", type=Path,
                        default=Path("runs") / f"bench-accuracy-{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args(own)

    accuracies = []
    for seed in args.seeds:
        out = args.out_root / f"seed{seed}"
        command = train_command(args.recipe, out, ["--seed", str(seed), *extra])
        started = time.perf_counter()
        run_checked(command)
        process_seconds = time.perf_counter() - started  # process start to printed test result
        summary = read_summary(out)
        accuracies.append(summary["test_accuracy"])
        emit(summary["model"], "test_accuracy", summary["test_accuracy"], summary["device"], command,
             torch_version=summary["torch_version"], seed=seed, recipe=args.recipe,
             best_epoch=summary["best_epoch"], best_val_accuracy=summary["best_val_accuracy"],
             wall_time_s=summary["wall_time_s"], process_seconds=process_seconds)
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    emit(summary["model"], "test_accuracy_mean", statistics.fmean(accuracies), summary["device"],
         [sys.executable, *sys.argv], torch_version=summary["torch_version"], seeds=args.seeds, std=spread,
         recipe=args.recipe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
