"""Shared by the benchmark scripts: one JSON line per measurement, and running `classicnets train`."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes" / "fashion_mnist"


def record(model: str, metric: str, value: float | None, device: str, command: list[str],
           torch_version: str | None = None, **extra: Any) -> dict[str, Any]:
    """One measurement: what was measured, the figure, where, with which torch (this process's
    unless ``torch_version`` names the one that ran it), when and by which command."""
    if torch_version is None:
        import torch

        torch_version = torch.__version__
    return {"model": model, "metric": metric, "value": value, "device": device,
            "torch_version": torch_version, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": shlex.join(command), **extra}


def emit(model: str, metric: str, value: float, device: str, command: list[str], **extra: Any) -> None:
    """Print one measurement as a JSON line (stdout, flushed)."""
    print(json.dumps(record(model, metric, value, device, command, **extra)), flush=True)


def train_command(recipe: str, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "classicnets", "train", "--recipe", recipe, "--out", str(out), "--quiet", *extra]


def run_checked(command: list[str]) -> None:
    """Run a command with its output passed through to stderr (stdout keeps the JSON lines
    alone); stop the benchmark if it fails."""
    result = subprocess.run(command, stdout=sys.stderr)
    if result.returncode != 0:
        raise SystemExit(f"benchmark step failed (exit {result.returncode}): {shlex.join(command)}")


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def passthrough_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` at ``--``: benchmark options before, extra `classicnets train` flags after."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def timed_steps_parser(description: str, batch_size_help: str) -> argparse.ArgumentParser:
    """The options every timed-training-steps benchmark takes: models, size, batch, steps, device."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--models", nargs="+", default=["vgg16", "googlenet"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, help=batch_size_help)
    parser.add_argument("--steps", type=int, default=50, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--device", default="auto",
                        help="auto (the default: cuda if a GPU is there, else cpu), cpu, cuda or cuda:N")
    return parser


def resolve_device_name(name: str) -> str:
    """The project's own device choice (``classicnets train --device``): "auto" is cuda when
    a GPU is there, else cpu; asking for cuda without a GPU is an error (``UserError``)."""
    from classicnets.engine.loop import resolve_device

    return str(resolve_device(name))


def check_timed_steps(parser: argparse.ArgumentParser, args: argparse.Namespace, resolve: bool = True) -> None:
    """Check the step counts and (``resolve``) replace ``args.device`` by the device it resolves to."""
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    if not resolve:
        return
    from classicnets.errors import UserError

    try:
        args.device = resolve_device_name(args.device)
    except (UserError, RuntimeError) as error:  # RuntimeError: torch does not know the name
        parser.error(str(error))


def synchronize(device) -> None:
    """Wait for the GPU's queued work, so that a host clock reading covers it."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(run_step, warmup: int, steps: int, device) -> float:
    """Seconds of ``steps`` calls of ``run_step()`` after ``warmup`` untimed ones
    (compilation, cuDNN autotuning), the device synchronised at both ends."""
    for _ in range(warmup):
        run_step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        run_step()
    synchronize(device)
    return time.perf_counter() - start
