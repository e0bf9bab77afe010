"""The classic CNNs side by side: one row per family (or per model), one accuracy-against-cost chart.

Every family comes from the registry and every per-model fact from its registry entry
(paper, year, native input size, class and channel counts) or from the model itself:

* size and cost at the model's native input, one image, on the meta device, by
  :func:`~classicnets.analysis.summary.summarize` (its conventions: MACs of convolutions
  and matrix products plus one per element for batch norm; the parameters the eval-mode
  forward uses, so GoogLeNet's auxiliary heads are left out; activation memory of every
  distinct tensor the layers output);
* the final receptive field: the widest field among the layers whose output is still a
  map (summary.py follows the fields layer by layer; past the global pool every output
  sees the whole input). For a chain of layers it is the last one's, for GoogLeNet the
  widest branch of the last module, for ResNet the main path of the last block;
* speed, measured now on this machine's CPU (eval mode, fp32, random input, no gradients):
  the median latency of one image and the images per second of a batch, after warm-up runs;
* accuracy: the ImageNet-1K top-1 torchvision publishes for the weights that port into the
  model, read from torchvision's weight enum by :mod:`classicnets.models.published`.

One model represents each family by default: the registry entry flagged ``representative``
when there is one; otherwise the middle one, by parameters, of the family's models that have
published ImageNet weights (of all its models when none has): VGG16 among VGG 11/13/16/19
with and without batch norm, ResNet-50 among ResNet-18/34/50/101/152.
"""

from __future__ import annotations

import inspect
import io
import os
import statistics
import textwrap
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..files import atomic_write_bytes
from ..models import create_model, get_model_entry, list_models
from ..models.published import torchvision_published_accuracy
from .receptive_field import ReceptiveField, format_field, widest
from .summary import count_params, summarize
from .text_table import format_count, format_macs, format_mib, render_markdown

DEFAULT_INPUT_SIZE, DEFAULT_IN_CHANS, DEFAULT_CLASSES = 224, 3, 1000
Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchSettings:
    repeats: int = 5  # timed runs; the median is reported
    warmup: int = 2  # untimed runs first
    batch_size: int = 32  # for the throughput


@dataclass(frozen=True)
class ZooRow:
    name: str
    family: str
    paper_config: str
    year: int | None
    paper: str | None
    input_size: int
    in_chans: int
    num_classes: int
    params: int  # used by the eval-mode forward
    total_params: int  # everything built, auxiliary heads included
    macs: int  # one image, eval mode
    activation_bytes: int  # one image, eval mode, fp32
    receptive_field: ReceptiveField | None  # of the last feature map
    top1: float | None  # published ImageNet-1K top-1, percent
    top1_source: str | None
    latency_ms: float | None = None  # CPU, one image
    images_per_s: float | None = None  # CPU, a batch of BenchSettings.batch_size


# ----------------------------------------------------------------------------- which models

def native_settings(name: str) -> tuple[int, int, int]:
    """(input size, input channels, classes) the model was designed for: the registry entry's
    ``native_input_size`` / ``native_in_chans`` / ``native_num_classes`` where it has them,
    else the builder's own defaults (LeNet's 1 channel and 10 classes), else 224, 3, 1000."""
    entry = get_model_entry(name)
    defaults = _builder_defaults(entry.builder)
    size = getattr(entry, "native_input_size", None) or DEFAULT_INPUT_SIZE
    if isinstance(size, (tuple, list)):
        size = size[-1]
    in_chans = getattr(entry, "native_in_chans", None) or defaults.get("in_chans") or DEFAULT_IN_CHANS
    classes = getattr(entry, "native_num_classes", None) or defaults.get("num_classes") or DEFAULT_CLASSES
    return int(size), int(in_chans), int(classes)


def _builder_defaults(builder: Callable) -> dict[str, int]:
    try:
        parameters = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return {}
    return {key: p.default for key in ("in_chans", "num_classes")
            if (p := parameters.get(key)) is not None and isinstance(p.default, int)}


def families() -> list[str]:
    """Every registered family, in the order of the papers (year, where the registry has it)."""
    first: dict[str, str] = {}
    for name in list_models():
        first.setdefault(get_model_entry(name).family, name)
    return sorted(first, key=lambda family: _year_key(first[family], family))


def _year_key(name: str, family: str) -> tuple:
    year = getattr(get_model_entry(name), "year", None)
    return (year is None, year or 0, family)


def family_models(family: str) -> list[str]:
    return [name for name in list_models() if get_model_entry(name).family == family]


def representative(family: str) -> str:
    """The model that stands for ``family`` (see the module docstring)."""
    names = family_models(family)
    flagged = [n for n in names if getattr(get_model_entry(n), "representative", False)]
    if flagged:
        return flagged[0]
    candidates = [n for n in names if torchvision_published_accuracy(n) is not None] or names
    if len(candidates) == 1:
        return candidates[0]
    by_size = sorted(candidates, key=lambda n: (_native_params(n), n))
    return by_size[len(by_size) // 2]


def _native_params(name: str) -> int:
    _, in_chans, classes = native_settings(name)
    with torch.device("meta"):
        return count_params(create_model(name, num_classes=classes, in_chans=in_chans))


def zoo_models(all_models: bool = False) -> list[str]:
    """The models of the zoo: one per family, or every registered model, family by family."""
    if all_models:
        return [name for family in families() for name in family_models(family)]
    return [representative(family) for family in families()]


# ----------------------------------------------------------------------------- measuring

def describe(name: str) -> ZooRow:
    """Everything but the speed, measured on the meta device at the native input."""
    entry = get_model_entry(name)
    size, in_chans, classes = native_settings(name)
    with torch.device("meta"):
        model = create_model(name, num_classes=classes, in_chans=in_chans)
    summary = summarize(model, size, in_chans=in_chans, batch_size=1, name=name, training_pass=False)
    published = torchvision_published_accuracy(name)
    return ZooRow(
        name=name, family=entry.family, paper_config=entry.paper_config,
        year=getattr(entry, "year", None), paper=getattr(entry, "paper", None),
        input_size=size, in_chans=in_chans, num_classes=classes,
        params=summary.inference_params, total_params=summary.total_params, macs=summary.macs,
        activation_bytes=summary.activation_bytes,
        receptive_field=final_receptive_field(summary.layers),
        top1=published[0] if published else None, top1_source=published[1] if published else None,
    )


def final_receptive_field(layers: Sequence) -> ReceptiveField | None:
    """The widest field among the layers whose output is still a map (None if none is)."""
    fields = [row.receptive_field for row in layers
              if row.receptive_field is not None and not row.receptive_field.whole]
    return widest(fields) if fields else None


def _median_seconds(step: Callable[[], object], bench: BenchSettings) -> float:
    for _ in range(bench.warmup):
        step()
    times = []
    for _ in range(bench.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def benchmark(row: ZooRow, bench: BenchSettings) -> ZooRow:
    """``row`` with its CPU latency (one image) and throughput (a batch), measured now."""
    torch.manual_seed(0)
    model = create_model(row.name, num_classes=row.num_classes, in_chans=row.in_chans).eval()
    shape = (row.in_chans, row.input_size, row.input_size)
    one, batch = torch.randn(1, *shape), torch.randn(bench.batch_size, *shape)
    with torch.inference_mode():
        latency = _median_seconds(lambda: model(one), bench)
        per_batch = _median_seconds(lambda: model(batch), bench)
    return replace(row, latency_ms=1000 * latency, images_per_s=bench.batch_size / per_batch)


def collect_zoo(names: Sequence[str], bench: BenchSettings | None = None,
                progress: Progress | None = None) -> list[ZooRow]:
    rows = []
    for name in names:
        row = describe(name)
        if bench is not None:
            if progress:
                progress(f"timing {name} on the CPU at {row.input_size} px ...")
            row = benchmark(row, bench)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- the table

HEADERS = ["family", "model", "year", "paper", "input", "params", "MACs", "activations", "final RF",
           "CPU latency, 1 image", "CPU throughput", "ImageNet top-1", "top-1 source"]


def table_rows(rows: Sequence[ZooRow], bench: BenchSettings | None) -> list[list[str]]:
    unmeasured = "not measured" if bench is None else "-"
    return [[
        r.family, r.name, str(r.year) if r.year is not None else "-", r.paper or "-",
        f"{r.in_chans}x{r.input_size}x{r.input_size}, {r.num_classes} classes",
        format_count(r.params), format_macs(r.macs), format_mib(r.activation_bytes),
        format_field(r.receptive_field)[0],
        f"{r.latency_ms:,.2f} ms" if r.latency_ms is not None else unmeasured,
        f"{r.images_per_s:,.1f} img/s" if r.images_per_s is not None else unmeasured,
        f"{r.top1:.2f}%" if r.top1 is not None else "-",
        r.top1_source or "-",
    ] for r in rows]


def format_zoo(rows: Sequence[ZooRow], bench: BenchSettings | None, chart_link: str | None = None,
               all_models: bool = False) -> str:
    """The markdown page: table, how each column was obtained, and the chart when drawn."""
    which = "every registered model" if all_models else "one model per registered family"
    speed = ("not measured (--no-bench)." if bench is None else
             f"measured now on this machine's CPU ({torch.get_num_threads()} threads, torch {torch.__version__}): "
             f"eval mode, fp32, random input, no gradients; the median of {_runs(bench.repeats)} after "
             f"{_runs(bench.warmup, 'warm-up run')}. Latency is one image; throughput a batch of "
             f"{bench.batch_size}.")
    lines = [
        "# The classic CNNs side by side",
        "",
        f"Generated by `classicnets zoo`: {which}.",
        "",
        render_markdown(HEADERS, table_rows(rows, bench), ["l", "l", "r", "l", "l", "r", "r", "r", "r", "r", "r", "r",
                                                          "l"]),
        "",
        "- **input**: the model's native input (channels x height x width) and class count; every "
        "figure is for that input.",
        "- **params**: the parameters the inference forward uses (GoogLeNet's auxiliary heads, which "
        "run only in training, are left out). **MACs**: multiply-adds of one image (convolutions and "
        "linear layers, plus one per element for batch norm). **activations**: every distinct tensor "
        "the layers output in one eval-mode forward of one image, fp32. All computed from the network "
        "on the meta device, as `classicnets summary` does.",
        "- **final RF**: receptive field, in input pixels, of the last feature map before the global "
        "pooling or the classifier (after it, every output sees the whole input).",
        f"- **speed**: {speed}",
        "- **ImageNet top-1**: the figure torchvision publishes for its weights, which port exactly "
        "into this model; read from the weight enum's meta. '-': torchvision has no weights for it.",
    ]
    if chart_link:
        lines += ["", f"![ImageNet top-1 against multiply-adds]({chart_link})"]
    return "\n".join(lines) + "\n"


def _runs(count: int, what: str = "run") -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


# ----------------------------------------------------------------------------- the chart

def _marker_area(params: int) -> float:
    return 15 + 6 * params / 1e6  # points^2: VGG16's 138 M gives about 850


def zoo_figure(rows: Sequence[ZooRow]):
    """ImageNet top-1 against multiply-adds (log scale); marker area by parameters; the models
    without published accuracy are named in a note under the plot."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(8.5, 6), layout="constrained")
    axes = figure.subplots()
    colours = {family: f"C{i % 10}" for i, family in enumerate(dict.fromkeys(r.family for r in rows))}
    plotted = [r for r in rows if r.top1 is not None and r.macs > 0]
    for r in plotted:
        x = r.macs / 1e9
        axes.scatter([x], [r.top1], s=_marker_area(r.params), color=colours[r.family], alpha=0.55,
                     edgecolors="black", linewidths=0.6, zorder=3)
        label = r.name if r.year is None else f"{r.name} ({r.year})"
        offset = _marker_area(r.params) ** 0.5 / 2 + 2  # beside the marker, not over it
        axes.annotate(label, (x, r.top1), xytext=(offset, offset * 0.4), textcoords="offset points", fontsize=8)
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    if plotted:
        xs, ys = [r.macs / 1e9 for r in plotted], [r.top1 for r in plotted]
        axes.set_xlim(min(xs) / 2, max(xs) * 2.5)
        axes.set_ylim(min(ys) - 3, max(ys) + 3)
        for millions in (5, 25, 100):  # the size key
            axes.scatter([], [], s=_marker_area(millions * 10**6), color="grey", alpha=0.4, edgecolors="black",
                         linewidths=0.6, label=f"{millions} M params")
        axes.legend(loc="lower right", labelspacing=1.6, borderpad=1.0, fontsize=8, title="marker area",
                    title_fontsize=8)
    else:
        axes.set_xlim(0.1, 100)
        axes.set_ylim(50, 90)
        axes.text(0.5, 0.5, "no model here has published ImageNet accuracy", transform=axes.transAxes,
                  ha="center", va="center")
    axes.set_xlabel("multiply-adds per image at the native input (G, log scale)")
    axes.set_ylabel("ImageNet-1K top-1 (%), torchvision's published weights")
    axes.grid(alpha=0.3, which="both")
    axes.set_title("The classic CNNs: accuracy against operations")
    missing = [r for r in rows if r.top1 is None]
    if missing:
        by_family: dict[str, list[str]] = {}
        for r in missing:
            by_family.setdefault(r.family, []).append(r.name)
        note = "No published ImageNet accuracy, not plotted: " + "; ".join(
            f"{family}: {', '.join(names)}" for family, names in by_family.items()) + "."
        figure.supxlabel("\n".join(textwrap.wrap(note, 110)), fontsize=8)
    return figure


def write_zoo_chart(path: str | os.PathLike, rows: Sequence[ZooRow]) -> Path:
    """Draw :func:`zoo_figure` into the PNG ``path`` atomically."""
    buffer = io.BytesIO()
    zoo_figure(rows).savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
