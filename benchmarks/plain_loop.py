"""Training speed of a hand-written PyTorch loop against `classicnets train`, same model, same data.

The plain loop is what a learner writes first: torchvision's FashionMNIST with ToTensor and
Normalize, a DataLoader (batch 128, shuffled, 2 workers), float32 in the default memory
layout, cross-entropy and SGD with momentum. It times --steps optimizer steps after --warmup
untimed ones, data loading included. The other side is `classicnets train` on the same model
and data (Fashion-MNIST, 28 px, batch 128, 1 channel, 10 classes) for one epoch of --subset
images (default: as many as the plain loop times, 60 x 128 = 7,680), read from the
training images/s the run writes to metrics.csv (training only: validation and test are
not in it). The trainer's epoch has no warm-up left out, so its figure carries its first
steps; the plain loop's does not.

Each round runs the plain loop, then `classicnets train` (--rounds rounds per model, the
two sides alternating). One JSON line per measurement (side, round), then one per model
with speedup_vs_plain_loop = mean classicnets images/s / mean plain-loop images/s.
`classicnets train`'s output goes to stderr; stdout holds the JSON lines alone. With the
defaults a round of googlenet takes about 1-2 minutes per side on a 2-core CPU.

    python benchmarks/plain_loop.py --data-dir ../shared/data                      # googlenet, vgg16
    python benchmarks/plain_loop.py --data-dir ../shared/data -- --cpu-bf16 false  # trainer in float32 too
    python benchmarks/plain_loop.py --data-dir ../shared/data --models googlenet:aux_logits=false -- --compile
    python benchmarks/plain_loop.py --data-dir ../shared/data --models lenet5 --steps 2 --warmup 1 \\
        --subset 256 --rounds 1                                                      # smoke

Flags after -- go to `classicnets train` only (the plain loop stays as it is). A model takes
keyword arguments as NAME:KEY=VALUE (e.g. googlenet:aux_logits=false), given to both sides
(to `classicnets train` through a temporary recipe's model_kwargs).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from benchlib import check_timed_steps, emit, passthrough_args, run_checked
from cpu_bf16 import parse_model

BATCH_SIZE = 128
IMAGE_SIZE = 28  # Fashion-MNIST's own size: the plain loop does not resize
DEFAULT_STEPS = 60
DEFAULT_WARMUP = 5


def plain_loop(name: str, model_kwargs: dict, data_dir: str, steps: int, warmup: int) -> float:
    """Images/s of a hand-written training loop over ``steps`` steps after ``warmup`` untimed ones."""
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from classicnets import create_model

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))])
    train_set = datasets.FashionMNIST(root=data_dir, train=True, download=False, transform=transform)
    loader = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True, num_workers=2)

    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=1, **model_kwargs)
    model.train()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    step, timed_images = 0, 0
    start = time.perf_counter()  # restarted when the warm-up ends
    while step < warmup + steps:  # a new epoch when the loader runs out
        for images, labels in loader:
            outputs = model(images)
            if isinstance(outputs, tuple):  # GoogLeNet in train mode: its logits, then its auxiliary heads'
                logits, *aux_logits = outputs
                loss = criterion(logits, labels) + 0.3 * sum(criterion(aux, labels) for aux in aux_logits)
            else:
                loss = criterion(outputs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

            step += 1
            if step > warmup:
                timed_images += len(labels)
            if step == warmup:
                start = time.perf_counter()  # the warm-up is over: time from here
            if step == warmup + steps:
                break
    seconds = time.perf_counter() - start
    return timed_images / seconds


def classicnets_train(name: str, model_kwargs: dict, data_dir: str, subset: int, extra: list[str],
                      out: Path) -> tuple[float, list[str]]:
    """Images/s of one epoch of `classicnets train` on ``subset`` images, and the command that ran."""
    command = [sys.executable, "-m", "classicnets", "train", "--model", name, "--dataset", "fashion-mnist",
               "--data-dir", data_dir, "--image-size", str(IMAGE_SIZE), "--batch-size", str(BATCH_SIZE),
               "--epochs", "1", "--subset", str(subset), "--device", "cpu", "--quiet", "--out", str(out / "run")]
    if model_kwargs:  # `classicnets train` has no flag for them: a recipe does
        out.mkdir(parents=True)
        recipe = out / "model_kwargs.yaml"
        recipe.write_text(yaml.safe_dump({"model_kwargs": model_kwargs}))
        command += ["--recipe", str(recipe)]
    command += extra
    run_checked(command)
    with open(out / "run" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return float(rows[-1]["images_per_s"]), command  # training images / training seconds of the epoch


def main(argv: list[str]) -> int:
    own, extra = passthrough_args(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["googlenet", "vgg16"], metavar="NAME[:KEY=VALUE,...]",
                        help="models to compare (default: googlenet vgg16)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds per model, each the plain loop then classicnets train (default: 2)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help=f"plain loop: timed steps of batch {BATCH_SIZE} (default: {DEFAULT_STEPS})")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help=f"plain loop: untimed steps first (default: {DEFAULT_WARMUP})")
    parser.add_argument("--subset", type=int,
                        help=f"classicnets train: training images of its one epoch (default: --steps x {BATCH_SIZE}, "
                             f"as many as the plain loop times)")
    parser.add_argument("--data-dir", default=os.environ.get("CLASSICNETS_DATA", "data"),
                        help="data root holding FashionMNIST/raw/ (default: $CLASSICNETS_DATA, else ./data)")
    args = parser.parse_args(own)
    check_timed_steps(parser, args, resolve=False)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.subset is None:
        args.subset = args.steps * BATCH_SIZE
    elif args.subset < 1:
        parser.error("--subset must be at least 1")
    if not (Path(args.data_dir) / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        parser.error(f"Fashion-MNIST is not at {args.data_dir}/FashionMNIST/raw; give --data-dir "
                     f"(or set CLASSICNETS_DATA)")

    device = f"cpu ({torch.get_num_threads()} threads)"
    settings = {"image_size": IMAGE_SIZE, "batch_size": BATCH_SIZE, "steps": args.steps, "warmup": args.warmup,
                "subset": args.subset, "train_flags": extra}
    with tempfile.TemporaryDirectory(prefix="bench-plain-loop-") as work:
        for index, spec in enumerate(args.models):
            name, model_kwargs = parse_model(spec)
            speeds = {"plain_loop": [], "classicnets": []}
            for round_number in range(1, args.rounds + 1):
                value = round(plain_loop(name, model_kwargs, args.data_dir, args.steps, args.warmup), 1)
                speeds["plain_loop"].append(value)
                emit(spec, "train_images_per_s", value, device, [sys.executable, *sys.argv],
                     side="plain_loop", round=round_number, **settings)
                out = Path(work) / f"{index}-{name}-round{round_number}"
                value, command = classicnets_train(name, model_kwargs, args.data_dir, args.subset, extra, out)
                value = round(value, 1)
                speeds["classicnets"].append(value)
                emit(spec, "train_images_per_s", value, device, command,
                     side="classicnets", round=round_number, **settings)
            plain_mean = statistics.fmean(speeds["plain_loop"])
            classicnets_mean = statistics.fmean(speeds["classicnets"])
            emit(spec, "speedup_vs_plain_loop", round(classicnets_mean / plain_mean, 2), device,
                 [sys.executable, *sys.argv], plain_loop_mean=round(plain_mean, 1),
                 classicnets_mean=round(classicnets_mean, 1), rounds=args.rounds, **settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
