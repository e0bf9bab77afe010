"""Seconds from process start to the printed test result, for VGG16 to >= 94%.

Starts `classicnets train` with the fast recipe, timestamps the moment its
"test accuracy:" line appears on stdout (so interpreter start, imports, data loading,
every epoch and the test evaluation are all counted), and prints one JSON line.

    python benchmarks/time_to_accuracy.py                      # recipes/fashion_mnist/vgg16_fast.yaml
    # CPU smoke test: flags after -- go to `classicnets train`
    python benchmarks/time_to_accuracy.py -- --device cpu --epochs 1 --subset 256 --image-size 32
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from benchlib import RECIPES, emit, passthrough_args, read_summary, train_command

RESULT_PREFIX = "test accuracy:"


def main(argv: list[str]) -> int:
    own, extra = passthrough_args(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(RECIPES / "vgg16_fast.yaml"))
    parser.add_argument("--target", type=float, default=0.94, help="test accuracy to reach (fraction)")
    parser.add_argument("--out", type=Path, default=Path("runs") / f"bench-tta-{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args(own)

    command = train_command(args.recipe, args.out, extra)
    start = time.perf_counter()
    seconds = None
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1) as process:
        for line in process.stdout:
            if seconds is None and line.startswith(RESULT_PREFIX):
                seconds = time.perf_counter() - start
            sys.stdout.write(line)
    if process.returncode != 0 or seconds is None:
        raise SystemExit(f"training failed (exit {process.returncode}) or printed no test result")
    summary = read_summary(args.out)
    emit(summary["model"], "seconds_to_test_result", round(seconds, 2), summary["device"], command,
         torch_version=summary["torch_version"], test_accuracy=summary["test_accuracy"], target=args.target,
         reached_target=summary["test_accuracy"] >= args.target, recipe=args.recipe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
