"""Side-by-side comparison of finished runs: a markdown report with PNG charts.

For each run directory, from the run itself:

* size and cost, computed from the network (:mod:`.summary`, on the meta device):
  parameters, multiply-adds per image, parameter memory, the activations of one
  eval-mode forward pass and what autograd keeps for backward, at a chosen batch size
  and the run's image size; plus parameters and multiply-adds at the papers' setting
  (3x224x224, 1000 classes), which is what published comparisons quote;
* speed, measured now on this machine: training throughput (SGD steps on random data
  at the batch size) and inference latency (one image, eval mode), on the CPU and, when
  there is one, on the GPU; and the training throughput the run recorded itself;
* results, from the run's ``summary.json``: best validation and test accuracy, the
  epoch of the best weights, epochs and training wall time.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..engine.checkpoint import load_run
from ..files import atomic_write_bytes
from ..errors import UserError
from .figures import output_dir, output_file, save_figure
from .run_data import run_home
from .text_table import format_count, format_macs, format_mib, render_markdown

SUMMARY_FILE = "summary.json"
PAPER_SIZE, PAPER_CHANNELS, PAPER_CLASSES = 224, 3, 1000


@dataclass(frozen=True)
class BenchSettings:
    steps: int = 3  # timed repetitions; the median is reported
    warmup: int = 1  # untimed repetitions first (allocator, cuDNN autotuning)
    devices: tuple[str, ...] = ()  # empty: the CPU, and CUDA when available

    def resolved_devices(self) -> tuple[str, ...]:
        if self.devices:
            return self.devices
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


@dataclass
class RunStats:
    label: str
    run_dir: Path
    model: str
    dataset: str
    image_size: int
    in_chans: int
    num_classes: int
    batch_size: int
    params: int
    macs: int  # one image, eval-mode forward
    paper_params: int  # 3x224x224 input, 1000 classes
    paper_macs: int
    param_bytes: int
    forward_activation_bytes: int  # eval-mode forward, whole batch
    backward_saved_bytes: int | None  # training-mode forward, whole batch
    results: dict[str, Any]  # summary.json, empty when the run has none
    train_images_per_s: dict[str, float] = field(default_factory=dict)  # measured, by device
    latency_ms: dict[str, float] = field(default_factory=dict)  # measured, by device


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        return {}  # a run still training, or stopped early: its results stay blank
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error.msg}).") from None


def network_costs(model_name: str, num_classes: int, in_chans: int, image_size: int, batch_size: int,
                  model_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parameters, MACs and memory of a freshly built network, measured on the meta device."""
    from ..models import create_model
    from .summary import count_macs, summarize

    kwargs = model_kwargs or {}
    with torch.device("meta"):
        model = create_model(model_name, num_classes=num_classes, in_chans=in_chans, **kwargs)
        paper = create_model(model_name, num_classes=PAPER_CLASSES, in_chans=PAPER_CHANNELS, **kwargs)
    summary = summarize(model, input_size=image_size, in_chans=in_chans, batch_size=batch_size, name=model_name)
    return {
        "params": summary.total_params,
        "macs": count_macs(model, input_size=image_size, in_chans=in_chans, batch_size=1),
        "param_bytes": summary.param_bytes,
        "forward_activation_bytes": summary.activation_bytes,
        "backward_saved_bytes": summary.saved_for_backward_bytes,
        "paper_params": sum(p.numel() for p in paper.parameters()),
        "paper_macs": count_macs(paper, input_size=PAPER_SIZE, in_chans=PAPER_CHANNELS, batch_size=1),
    }


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(step: Callable[[], None], device: torch.device, bench: BenchSettings) -> float:
    for _ in range(bench.warmup):
        step()
    _synchronize(device)
    times = []
    for _ in range(bench.steps):
        start = time.perf_counter()
        step()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_latency_ms(model: nn.Module, image_shape: tuple[int, int, int], device: str,
                       bench: BenchSettings) -> float:
    """Median milliseconds of one eval-mode forward pass of a single image."""
    target = torch.device(device)
    network = copy.deepcopy(model).to(target).eval()
    x = torch.randn(1, *image_shape, device=target)

    def step() -> None:
        with torch.no_grad():
            network(x)

    return 1000 * _median_seconds(step, target, bench)


def measure_train_throughput(model: nn.Module, image_shape: tuple[int, int, int], num_classes: int,
                             batch_size: int, device: str, bench: BenchSettings) -> float:
    """Images per second of full SGD steps (forward, loss with aux heads, backward, update)."""
    from ..engine.optim import training_loss

    target = torch.device(device)
    network = copy.deepcopy(model).to(target).train()  # a copy: the run's weights stay untouched
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-3, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    x = torch.randn(batch_size, *image_shape, device=target)
    y = torch.randint(0, num_classes, (batch_size,), device=target)

    def step() -> None:
        loss, _ = training_loss(network(x), y, criterion, aux_weight=0.3)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    try:
        return batch_size / _median_seconds(step, target, bench)
    except ValueError as error:  # batch norm with one value per channel in training mode
        raise UserError(f"a training step at batch size {batch_size} fails ({error}); "
                        f"use a larger batch size.") from None


def collect_run_stats(run_dir: Path, batch_size: int = 16, bench: BenchSettings | None = None,
                      label: str | None = None) -> RunStats:
    """Everything the report shows for one run; ``bench=None`` skips the timings."""
    run_dir = Path(run_dir)
    results = read_summary(run_home(run_dir))  # first: a broken file should not cost a measurement
    model, meta = load_run(run_dir)
    shape = (meta["in_chans"], meta["image_size"], meta["image_size"])
    costs = network_costs(meta["model"], meta["num_classes"], meta["in_chans"], meta["image_size"],
                          batch_size, meta.get("model_kwargs"))
    stats = RunStats(label=label or run_dir.name, run_dir=run_dir, model=meta["model"],
                     dataset=meta.get("dataset", "?"), image_size=meta["image_size"], in_chans=meta["in_chans"],
                     num_classes=meta["num_classes"], batch_size=batch_size, results=results,
                     **costs)
    if bench is not None:
        for device in bench.resolved_devices():
            stats.latency_ms[device] = measure_latency_ms(model, shape, device, bench)
            stats.train_images_per_s[device] = measure_train_throughput(
                model, shape, meta["num_classes"], batch_size, device, bench)
    return stats


def unique_labels(run_dirs: Sequence[Path]) -> list[str]:
    """Directory names, or parent/name where two runs share a name."""
    names = [Path(d).resolve().name for d in run_dirs]
    return [f"{Path(d).resolve().parent.name}/{n}" if names.count(n) > 1 else n for d, n in zip(run_dirs, names)]


# ----------------------------------------------------------------------------- the report

def _percent(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _number(value: float | None, unit: str, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f} {unit}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _unmeasured(device: str) -> str:
    return "n/a (no GPU)" if device == "cuda" and not torch.cuda.is_available() else "not measured"


def report_rows(stats: Sequence[RunStats]) -> list[tuple[str, list[str]]]:
    """(metric, one cell per run), in report order; every row is present for every run."""
    batch = {s.batch_size for s in stats}
    at = f"batch {batch.pop()}" if len(batch) == 1 else "the batch size"
    rows: list[tuple[str, list[str]]] = [
        ("model", [s.model for s in stats]),
        ("dataset", [s.dataset for s in stats]),
        ("input", [f"{s.in_chans}x{s.image_size}x{s.image_size}, {s.num_classes} classes" for s in stats]),
        ("parameters", [format_count(s.params) for s in stats]),
        ("MACs per image", [format_macs(s.macs) for s in stats]),
        ("parameters at 3x224x224, 1000 classes", [format_count(s.paper_params) for s in stats]),
        ("MACs per image at 3x224x224", [format_macs(s.paper_macs) for s in stats]),
        ("parameter memory (fp32)", [format_mib(s.param_bytes) for s in stats]),
        (f"forward activation memory, {at}", [format_mib(s.forward_activation_bytes) for s in stats]),
        (f"saved for backward, {at}",
         [format_mib(s.backward_saved_bytes) if s.backward_saved_bytes is not None else "n/a" for s in stats]),
        ("training throughput, recorded by the run",
         [_number(s.results.get("train_images_per_s"), "img/s") for s in stats]),
        ("device the run trained on", [str(s.results.get("device", "n/a")) for s in stats]),
    ]
    for device in ("cpu", "cuda"):
        where = "CPU" if device == "cpu" else "GPU"
        rows.append((f"training throughput, {where}, {at} (measured)",
                     [_number(s.train_images_per_s[device], "img/s") if device in s.train_images_per_s
                      else _unmeasured(device) for s in stats]))
        rows.append((f"inference latency, {where}, 1 image (measured)",
                     [_number(s.latency_ms[device], "ms", 2) if device in s.latency_ms
                      else _unmeasured(device) for s in stats]))
    rows += [
        ("best validation accuracy", [_percent(s.results.get("best_val_accuracy")) for s in stats]),
        ("test accuracy", [_percent(s.results.get("test_accuracy")) for s in stats]),
        ("best epoch / epochs",
         [f"{s.results['best_epoch']} / {s.results['epochs']}" if "best_epoch" in s.results else "n/a"
          for s in stats]),
        ("training wall time", [_duration(s.results.get("wall_time_s")) for s in stats]),
    ]
    return rows


def _bar_chart(path: Path, labels: Sequence[str], panels: Sequence[tuple[str, dict[str, Sequence[float | None]]]],
               title: str) -> Path:
    """Side-by-side panels; each panel groups one bar per series for every run."""
    from matplotlib.figure import Figure

    width = max(4.0, 1.1 * len(labels) + 2)
    figure = Figure(figsize=(width * len(panels), 4.2), layout="constrained")
    axes_list = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, (ylabel, series) in zip(axes_list, panels):
        bar_width = 0.8 / max(1, len(series))
        for k, (name, values) in enumerate(series.items()):
            positions = [i + (k - (len(series) - 1) / 2) * bar_width for i in range(len(labels))]
            heights = [v if v is not None else 0.0 for v in values]
            bars = axes.bar(positions, heights, width=bar_width, label=name)
            axes.bar_label(bars, labels=[f"{v:,.3g}" if v is not None else "n/a" for v in values], fontsize=7)
        axes.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
        axes.set_ylabel(ylabel)
        axes.grid(axis="y", alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(title)
    return save_figure(figure, path)


CHARTS = ("size", "memory", "speed", "accuracy")  # draw_charts writes CHART.png for each


def chart_dir_for(out: str | Path) -> Path:
    """Where the charts of the report ``out`` go: ``OUT_STEM_charts/`` beside it."""
    out = Path(out)
    return out.parent / f"{out.stem}_charts"


def draw_charts(chart_dir: Path, stats: Sequence[RunStats]) -> dict[str, Path]:
    labels = [s.label for s in stats]
    mib = 2 ** 20
    devices = [d for d in ("cpu", "cuda") if any(d in s.latency_ms for s in stats)]
    charts = {
        "size": _bar_chart(chart_dir / "size.png", labels, [
            ("parameters (millions)", {"at the run's input": [s.params / 1e6 for s in stats],
                                       "at 3x224x224, 1000 classes": [s.paper_params / 1e6 for s in stats]}),
            ("multiply-adds per image (G)", {"at the run's input": [s.macs / 1e9 for s in stats],
                                             "at 3x224x224": [s.paper_macs / 1e9 for s in stats]}),
        ], "network size and cost"),
        "memory": _bar_chart(chart_dir / "memory.png", labels, [
            ("MiB", {"parameters": [s.param_bytes / mib for s in stats],
                     "forward activations": [s.forward_activation_bytes / mib for s in stats],
                     "saved for backward": [None if s.backward_saved_bytes is None else s.backward_saved_bytes / mib
                                            for s in stats]}),
        ], f"memory at batch size {stats[0].batch_size}"),
        "speed": _bar_chart(chart_dir / "speed.png", labels, [
            ("training images / s", {"recorded by the run": [s.results.get("train_images_per_s") for s in stats],
                                     **{f"{d.upper()} (measured)": [s.train_images_per_s.get(d) for s in stats]
                                        for d in devices}}),
            ("inference latency, 1 image (ms)", {f"{d.upper()}": [s.latency_ms.get(d) for s in stats]
                                                 for d in devices} or {"not measured": [None] * len(stats)}),
        ], "speed"),
        "accuracy": _bar_chart(chart_dir / "accuracy.png", labels, [
            ("accuracy (%)", {"best validation": [_scaled(s.results.get("best_val_accuracy"), 100) for s in stats],
                              "test": [_scaled(s.results.get("test_accuracy"), 100) for s in stats]}),
            ("training wall time (minutes)", {"wall time": [_scaled(s.results.get("wall_time_s"), 1 / 60)
                                                            for s in stats]}),
        ], "results"),
    }
    return charts


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def check_report_paths(out: str | Path) -> tuple[Path, Path]:
    """The report file and its chart directory, checked usable (call before measuring)."""
    out = output_file(out)
    return out, output_dir(chart_dir_for(out))


def write_compare_report(out: Path, stats: Sequence[RunStats]) -> dict[str, Path]:
    """Write the markdown report ``out`` and its charts in ``<out stem>_charts/`` beside it."""
    if not stats:
        raise UserError("nothing to compare: give at least one run directory.")
    out, chart_dir = check_report_paths(out)
    charts = draw_charts(chart_dir, stats)
    rows = report_rows(stats)
    table = render_markdown(["", *(s.label for s in stats)], [[name, *cells] for name, cells in rows],
                            ["l"] + ["r"] * len(stats))
    lines = [
        "# Run comparison",
        "",
        f"Generated by `classicnets compare` on {time.strftime('%Y-%m-%d %H:%M')} "
        f"(torch {torch.__version__}).",
        "",
        "| run | directory |",
        "| --- | --- |",
        *(f"| {s.label} | `{s.run_dir}` |" for s in stats),
        "",
        table,
        "",
        "Parameters, MACs (multiply-accumulates of convolutions and linear layers) and memory are "
        "computed from the networks; memory is fp32 and for the batch size shown. Where a GoogLeNet "
        "was trained with its auxiliary heads, its parameters include them and its MACs do not "
        "(they run only in training). "
        "Timings are medians measured on this machine now, on random data, in fp32 without "
        "torch.compile; the recorded throughput "
        "is the run's own mean over its epochs (after the first) on the device it trained on. "
        "Accuracies come from each run's summary.json.",
        "",
    ]
    for name, title in (("size", "Size and cost"), ("memory", "Memory"), ("speed", "Speed"),
                        ("accuracy", "Results")):
        lines += [f"## {title}", "", f"![{title}]({chart_dir.name}/{charts[name].name})", ""]
    atomic_write_bytes(out, "\n".join(lines).encode())
    return {"report": out, **charts}
