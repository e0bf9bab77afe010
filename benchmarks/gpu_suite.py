"""The GPU measurements of BENCHMARKS.md in one call, within 8 minutes on one H100 or H200.

Runs the project's benchmark scripts, each step in its own process under its own time budget:

    step                           budget  what
    throughput_eager                 75 s  throughput.py, vgg16 and googlenet at 224 px, bf16 + channels-last
    throughput_compiled_vgg16        95 s  the same with torch.compile (--compile-mode, default "default")
    throughput_compiled_googlenet    95 s
    time_to_accuracy                 70 s  time_to_accuracy.py: recipes/fashion_mnist/vgg16_fast.yaml to >= 94%
    ddp_overhead                     55 s  ddp_overhead.py: vgg16 and googlenet, one plain process against
                                           one DDP rank started by torchrun
    accuracy_short                   80 s  recipe_accuracy.py: googlenet.yaml, seed 0, 8 epochs

Every measurement becomes one JSON line (the scripts' own lines, see benchlib.py, plus
``measurement``, ``dry_run``, ``budget_s``, ``step_wall_s`` and ``suite_command``), printed
and written to OUT/results.jsonl; OUT/summary.md tabulates them. A measurement that fails
or runs past its budget becomes a line with an ``error`` field (and ``value`` null), and the
suite goes on. The device is the project's own choice (``--device auto``: cuda when a GPU
is there); without a GPU only ``--dry-run`` (or an explicit ``--device cpu``) runs.

    python benchmarks/gpu_suite.py --data-dir DIR                 # one GPU, about 8 minutes
    python benchmarks/gpu_suite.py --data-dir DIR --dry-run       # any machine: about 50 s on two CPU cores

``--dry-run`` runs the same steps at toy sizes to check the suite end to end: 32 px, batches
of 2, one warm-up and one timed step, one epoch of 20 training images, the first 6,200
training and 100 test images of the real data, googlenet wherever vgg16 is measured (those
lines say ``"stands_in_for": "vgg16"``), torch.compile's graph capture without code
generation (backend "eager"), one CPU thread per process, and 45 s per step. Its lines say
``"dry_run": true`` and are not results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import RECIPES, record

HERE = Path(__file__).resolve().parent
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DRY_RUN_TEST_IMAGES = 100
DRY_RUN_TRAIN_IMAGES = 6200  # the default 6,000-image validation split, and 200 to train on
DRY_RUN_VGG16 = "googlenet"  # what a dry run runs where the suite measures vgg16
DRY_RUN_IMAGE_SIZE = 32
SHORT_EPOCHS = 8  # accuracy_short: googlenet.yaml's 60 epochs cut to 8 (2 of warm-up)
# The measurements' budgets add up to 470 s; the suite stops starting them at 455 s, which
# leaves its own start and the stopping of one measurement inside 480 s (8 minutes).
TOTAL_BUDGET_S = 455.0
DRY_RUN_TOTAL_BUDGET_S = 180.0
DRY_RUN_BUDGET_S = 45.0  # a dry run's steps take 5-12 s on two shared CPU cores


@dataclass
class Measurement:
    name: str
    budget_s: float  # on a GPU; a dry run gives every measurement DRY_RUN_BUDGET_S
    command: list[str]
    expect: list[dict[str, Any]]  # the JSON lines it must print, by the fields that identify them
    run_dir: Path | None = None  # training output, removed after unless --keep-runs


def plan(args: argparse.Namespace, device: str, data_dir: Path, runs: Path) -> list[Measurement]:
    """The measurements, with the command line of each (GPU sizes, or toy sizes for a dry run)."""
    py = sys.executable
    dry = args.dry_run
    vgg = DRY_RUN_VGG16 if dry else "vgg16"  # a dry run spares the CPU VGG-16's 134 M parameters
    data = ["--data-dir", str(data_dir)]
    timed = (["--image-size", str(DRY_RUN_IMAGE_SIZE), "--batch-size", "2", "--steps", "1", "--warmup", "1"]
             if dry else [])
    compiled = (["--compile", "--compile-backend", "eager"] if dry
                else ["--compile", "--compile-mode", args.compile_mode])
    train_dry = ["--epochs", "1", "--subset", "20", "--batch-size", "10", "--image-size", str(DRY_RUN_IMAGE_SIZE)]

    def line(model: str, metric: str, measures_vgg16: bool = False, **fields: Any) -> dict[str, Any]:
        """An expected JSON line; in a dry run, one that stands in for a vgg16 line says so."""
        note = {"_stands_in_for": "vgg16"} if dry and measures_vgg16 else {}
        return {"model": model, "metric": metric, **fields, **note}

    throughput = [py, str(HERE / "throughput.py"), "--device", device, *data, *timed]
    steps = [Measurement("throughput_eager", 75, [*throughput, "--models", vgg, "googlenet"],
                         [line(vgg, "train_images_per_s", True), line("googlenet", "train_images_per_s")])]
    for model, name in ((vgg, "vgg16"), ("googlenet", "googlenet")):
        steps.append(Measurement(f"throughput_compiled_{name}", 95, [*throughput, "--models", model, *compiled],
                                 [line(model, "train_images_per_s", name == "vgg16")]))
    out = runs / "time_to_accuracy"
    steps.append(Measurement(
        "time_to_accuracy", 70,
        [py, str(HERE / "time_to_accuracy.py"), "--recipe", str(RECIPES / "vgg16_fast.yaml"), "--out", str(out),
         "--", *data, "--device", device, *((train_dry + ["--model", vgg]) if dry else [])],
        [line(vgg, "seconds_to_test_result", True)], run_dir=out))
    steps.append(Measurement(
        "ddp_overhead", 55,
        [py, str(HERE / "ddp_overhead.py"), "--device", device, "--nproc", "1", "--models", vgg, "googlenet", *timed],
        [line(model, "train_images_per_s", model_is_vgg, mode=mode)
         for model, model_is_vgg in ((vgg, True), ("googlenet", False)) for mode in ("plain", "ddp")]))
    out = runs / "accuracy_short"
    short = train_dry + ["--warmup-epochs", "0"] if dry else ["--epochs", str(SHORT_EPOCHS), "--warmup-epochs", "2"]
    steps.append(Measurement(
        "accuracy_short", 80,
        [py, str(HERE / "recipe_accuracy.py"), "--recipe", str(RECIPES / "googlenet.yaml"), "--seeds", "0",
         "--out-root", str(out), "--", *data, "--device", device, *short],
        [line("googlenet", "test_accuracy", seed=0)], run_dir=out))
    return steps


def parse_budgets(parser: argparse.ArgumentParser, items: list[str], names: list[str]) -> dict[str, float]:
    budgets = {}
    for item in items:
        name, _, seconds = item.partition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = float("nan")
        if name not in names or not (math.isfinite(value) and value > 0):
            parser.error(f"--budget takes NAME=SECONDS with NAME one of {', '.join(names)} and SECONDS > 0, "
                         f"got {item!r}")
        budgets[name] = value
    return budgets


def dry_run_data(source: Path, target: Path) -> Path:
    """A data root holding the first DRY_RUN_TRAIN_IMAGES real training images and the first
    DRY_RUN_TEST_IMAGES real test images, so a dry run loads and evaluates little."""
    raw_in, raw_out = source / "FashionMNIST" / "raw", target / "FashionMNIST" / "raw"
    raw_out.mkdir(parents=True, exist_ok=True)
    for name in FASHION_MNIST_FILES:
        count = DRY_RUN_TRAIN_IMAGES if name.startswith("train") else DRY_RUN_TEST_IMAGES
        header, item_bytes = (16, 28 * 28) if "images" in name else (8, 1)
        with open(raw_in / name, "rb") as file:
            head = bytearray(file.read(header))
            body = file.read(count * item_bytes)
        head[4:8] = count.to_bytes(4, "big")  # IDX: a magic number, then the item count, big-endian
        (raw_out / name).write_bytes(bytes(head) + body)
    return target


def child_environment(dry_run: bool) -> dict[str, str]:
    """This environment, with the folder that holds the classicnets package first on PYTHONPATH
    (so the children import the same code, installed or run with PYTHONPATH=src).

    A dry run's children compute on one CPU thread: its toy steps gain nothing from more, and
    on a shared CPU two OpenMP threads waiting for each other at every operator made a toy
    GoogLeNet step take seconds instead of 40 ms.
    """
    import classicnets

    env = dict(os.environ)
    package_root = str(Path(classicnets.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    if dry_run:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    return env


def stop(process: subprocess.Popen) -> None:
    """End the measurement's whole process group (torchrun's workers, compile workers): TERM, then KILL."""
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_one(step: Measurement, budget_s: float, logs: Path,
            env: dict[str, str]) -> tuple[list[dict[str, Any]], str | None, float]:
    """Run one measurement under its budget: (its JSON lines, an error or None, seconds)."""
    out_path, err_path = logs / f"{step.name}.out", logs / f"{step.name}.err"
    start = time.perf_counter()
    error = None
    with open(out_path, "w") as out, open(err_path, "w") as err:
        process = subprocess.Popen(step.command, stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            status = process.wait(timeout=budget_s)
        except subprocess.TimeoutExpired:
            stop(process)
            status = None
            error = f"stopped at its time budget of {budget_s:.3g} s"
        except BaseException:  # Ctrl-C: leave no measurement running
            stop(process)
            raise
    seconds = time.perf_counter() - start
    if status:
        lines = [line.strip() for line in err_path.read_text(errors="replace").splitlines() if line.strip()]
        error = f"exit status {status}: " + (" | ".join(lines[-3:])[-600:] if lines else "no message")
    records = []
    for line in out_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(item, dict) and "metric" in item:
                records.append(item)
    return records, error, seconds


def matches(item: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Whether a printed line is the expected one (keys starting with _ are notes, not criteria)."""
    return all(item.get(key) == value for key, value in expected.items() if not key.startswith("_"))


def step_lines(step: Measurement, found: list[dict[str, Any]], error: str | None, device: str,
               suite_fields: dict[str, Any]) -> list[dict[str, Any]]:
    """One JSON line per expected measurement: the one the step printed, or one with an ``error``
    (and ``value`` null) where it printed none or a figure that is not a finite number."""
    lines = []
    for expected in step.expect:
        item = next((r for r in found if matches(r, expected)), None)
        if item is None:
            item = record(expected["model"], expected["metric"], None, device, step.command,
                          **{k: v for k, v in expected.items()
                             if k not in ("model", "metric") and not k.startswith("_")},
                          error=error or "the measurement printed no such line")
        else:
            found.remove(item)  # a dry run may measure one model twice: one line each
            if not isinstance(item.get("value"), (int, float)) or not math.isfinite(item["value"]):
                item["error"] = f"not a finite number: {item.get('value')!r}"
                item["value"] = None
        item.update(suite_fields)
        item.update({k[1:]: v for k, v in expected.items() if k.startswith("_")})  # notes, e.g. stands_in_for
        lines.append(item)
    return lines


def keep_run_files(step: Measurement, logs: Path, keep: bool) -> None:
    """Copy each training run's summary.json and metrics.csv beside the logs; drop the rest
    (checkpoints of VGG-16 are 1.6 GB) unless ``keep``."""
    if step.run_dir is None or not step.run_dir.exists():
        return
    for summary in step.run_dir.rglob("summary.json"):
        target = logs / step.name / summary.parent.relative_to(step.run_dir)
        target.mkdir(parents=True, exist_ok=True)
        for name in ("summary.json", "metrics.csv", "config.yaml"):
            if (summary.parent / name).exists():
                shutil.copy2(summary.parent / name, target / name)
    if not keep:
        shutil.rmtree(step.run_dir, ignore_errors=True)


def settings_text(item: dict[str, Any]) -> str:
    keys = ("stands_in_for", "mode", "world_size", "image_size", "batch_size", "batch_size_per_rank", "compile_mode",
            "compile_backend", "recipe", "seed", "test_accuracy", "reached_target", "best_epoch", "wall_time_s")
    parts = []
    for key in keys:
        value = item.get(key)
        if value is None or (key == "compile_mode" and not item.get("compile")):
            continue
        if key == "recipe":
            value = Path(str(value)).name
        elif key == "test_accuracy":
            value = f"{100 * value:.2f}%"
        elif isinstance(value, float):
            value = f"{value:.4g}"
        parts.append("stands in for vgg16" if key == "stands_in_for" else f"{key} {value}")
    return ", ".join(parts)


def format_value(item: dict[str, Any]) -> str:
    value = item.get("value")
    if item.get("error"):
        return f"error: {item['error']}".replace("|", "/")
    if item["metric"] == "test_accuracy":
        return f"{100 * value:.2f}%"
    if item["metric"] == "seconds_to_test_result":
        return f"{value:.1f} s"
    if item["metric"] == "train_images_per_s":
        return f"{value:,.1f} img/s"
    return str(value)


def markdown(results: list[dict[str, Any]], header: dict[str, str], dry: bool) -> str:
    title = ("# GPU suite: DRY RUN (toy sizes, not results)" if dry else "# GPU suite results")
    lines = [title, ""]
    if dry:
        lines += ["Every line below comes from `--dry-run`: toy image size, one timed step, a few training images, "
                  "googlenet in place of vgg16. The figures check that the suite works; they are not measurements "
                  "of the models or recipes.", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()] + [""]
    lines += ["| measurement | model | metric | value | settings | device | step s | dry run |",
              "| --- | --- | --- | ---: | --- | --- | ---: | --- |"]
    for item in results:
        lines.append(f"| {item['measurement']} | {item['model']} | {item['metric']} | {format_value(item)} | "
                     f"{settings_text(item)} | {item['device']} | {item['step_wall_s']:.1f} | "
                     f"{'yes' if item['dry_run'] else 'no'} |")
    overhead = []
    for model in sorted({item["model"] for item in results if item["measurement"] == "ddp_overhead"}):
        pair = {item.get("mode"): item.get("value") for item in results
                if item["measurement"] == "ddp_overhead" and item["model"] == model and not item.get("error")}
        if pair.get("plain") and pair.get("ddp"):
            overhead.append(f"{model} {100 * (1 - pair['ddp'] / pair['plain']):.1f}%")
    if overhead:
        lines += ["", "DDP overhead at one process, 1 - ddp/plain of the two lines above: " + ", ".join(overhead) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="Fashion-MNIST root, holding FashionMNIST/raw "
                        "(default: $CLASSICNETS_DATA, else ./data)")
    parser.add_argument("--out", type=Path, help="results folder (default runs/gpu-suite-<time>)")
    parser.add_argument("--device", default="auto", help="auto (default: cuda if a GPU is there), cuda, cpu")
    parser.add_argument("--dry-run", action="store_true",
                        help="toy sizes and short budgets, to check the suite on any machine (marked dry_run)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these measurements only")
    parser.add_argument("--budget", action="append", default=[], metavar="NAME=SECONDS",
                        help="change one measurement's time budget (repeatable)")
    parser.add_argument("--total-budget", type=float, metavar="SECONDS",
                        help="start no measurement after this many seconds, and cut the budget of one that would "
                             f"run past it (default {TOTAL_BUDGET_S:.0f}, dry run {DRY_RUN_TOTAL_BUDGET_S:.0f})")
    parser.add_argument("--compile-mode", default="default",
                        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"))
    parser.add_argument("--keep-runs", action="store_true", help="keep the training runs' checkpoints")
    parser.add_argument("--list", action="store_true", help="print the measurements and their budgets, run nothing")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.total_budget is not None and not (math.isfinite(args.total_budget) and args.total_budget > 0):
        parser.error("--total-budget must be a number of seconds above 0")

    from benchlib import resolve_device_name
    from classicnets.errors import UserError

    try:
        device = resolve_device_name(args.device)
    except (UserError, RuntimeError) as error:
        parser.error(str(error))
    if device == "cpu" and args.device == "auto" and not args.dry_run and not args.list:
        parser.error("no CUDA GPU here: the suite is sized for one H100 or H200. Check it on this machine "
                     "with --dry-run, or measure the CPU anyway with --device cpu.")
    data_root = (args.data_dir or Path(os.environ.get("CLASSICNETS_DATA") or "data")).resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = (args.out or Path("runs") / f"gpu-suite-{stamp}{'-dry-run' if args.dry_run else ''}").resolve()
    runs, logs = out / "runs", out / "logs"
    step_data = out / "dry-run-data" if args.dry_run else data_root  # made below, once the data is found
    steps = plan(args, device, step_data, runs)
    names = [step.name for step in steps]
    budgets = parse_budgets(parser, args.budget, names)
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"unknown measurement {', '.join(unknown)}; choose from {', '.join(names)}")
        steps = [step for step in steps if step.name in args.only]
    for step in steps:
        step.budget_s = budgets.get(step.name, DRY_RUN_BUDGET_S if args.dry_run else step.budget_s)
    total_budget = args.total_budget or (DRY_RUN_TOTAL_BUDGET_S if args.dry_run else TOTAL_BUDGET_S)
    if args.list:
        for step in steps:
            print(f"{step.name:32} {step.budget_s:6.0f} s   {shlex.join(step.command)}")
        return 0
    missing = [name for name in FASHION_MNIST_FILES if not (data_root / "FashionMNIST" / "raw" / name).is_file()]
    if missing:
        parser.error(f"Fashion-MNIST is missing from {data_root / 'FashionMNIST' / 'raw'}: put the uncompressed "
                     f"IDX files {', '.join(missing)} there, or point --data-dir or CLASSICNETS_DATA at the "
                     "folder that holds FashionMNIST/raw.")

    logs.mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        dry_run_data(data_root, step_data)

    import torch
    from classicnets.engine.loop import device_name

    suite_command = shlex.join([sys.executable, *sys.argv]) if __name__ == "__main__" else shlex.join(
        [sys.executable, str(Path(__file__).resolve()), *argv])
    device_label = device_name(torch.device(device))
    env = child_environment(args.dry_run)
    results: list[dict[str, Any]] = []
    try:
        with open(out / "results.jsonl", "w") as sink:
            for index, step in enumerate(steps, 1):
                left = total_budget - (time.perf_counter() - started)
                budget = min(step.budget_s, left)
                print(f"[{index}/{len(steps)}] {step.name}: budget {budget:.0f} s", file=sys.stderr, flush=True)
                cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
                if left < 1:
                    found, seconds = [], 0.0
                    error = f"not run: the suite's total budget of {total_budget:.0f} s was spent"
                else:
                    found, error, seconds = run_one(step, budget, logs, env)
                keep_run_files(step, logs, args.keep_runs)
                suite_fields = {"measurement": step.name, "dry_run": args.dry_run, "budget_s": round(budget, 1),
                                "step_wall_s": round(seconds, 2), "suite_command": suite_command}
                for item in step_lines(step, found, error, device_label, suite_fields):
                    results.append(item)
                    sink.write(json.dumps(item) + "\n")
                    sink.flush()
                    print(json.dumps(item), flush=True)
                cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = sum(getattr(cpu_after, k) - getattr(cpu_before, k) for k in ("ru_utime", "ru_stime"))
                print(f"[{index}/{len(steps)}] {step.name}: {seconds:.1f} s ({cpu:.1f} s CPU), {error or 'ok'}",
                      file=sys.stderr, flush=True)
    finally:  # also after Ctrl-C: the table of what was measured so far
        header = {"command": f"`{suite_command}`", "device": device_label, "torch": torch.__version__,
                  "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                  "whole suite": f"{time.perf_counter() - started:.0f} s (budget {total_budget:.0f} s)"}
        if args.dry_run:
            header["data"] = (f"the first {DRY_RUN_TRAIN_IMAGES:,} training and {DRY_RUN_TEST_IMAGES} test images of "
                              f"the real Fashion-MNIST in {data_root}")
            header["models"] = f"{DRY_RUN_VGG16} stands in for vgg16"
            header["threads"] = "OMP_NUM_THREADS=1 in every measurement's process"
            shutil.rmtree(step_data, ignore_errors=True)
        (out / "summary.md").write_text(markdown(results, header, args.dry_run))
        failures = sum("error" in item for item in results)
        print(f"{len(results) - failures} of {len(results)} measurements; results in {out}/results.jsonl and "
              f"{out}/summary.md", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
