"""One self-contained HTML page per run: ``classicnets report RUN_DIR``.

The page is built from the run's own files (``config.yaml``, ``metrics.csv`` or
``curves.png``, ``summary.json``, ``confusion_matrix.png``, ``best.safetensors``) and from a
bounded number of images of one of its splits, so that a large run stays fast:

* the first ``limit`` images are scored once; that pass gives the gallery of the most
  confident mistakes and the first ``cam_per_class`` images of each class, whose Grad-CAM
  overlays form the second gallery;
* the penultimate features of the first ``tsne_points`` images are mapped by t-SNE;
* the model's summary table is measured on the meta device (no data, no memory).

Every image is embedded as a base64 ``data:`` URI and the style sheet is inline, so the one
HTML file opens from disk with no server and no network. A section whose inputs are missing
(no ``summary.json`` yet, no weights, no data) says so in the page instead of failing.
The template is ``templates/report.html.j2`` (Jinja2, autoescaping on).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from ..errors import UserError
from .run_data import run_home

TEMPLATE = "report.html.j2"
DEFAULT_FILE = "report.html"
DEFAULT_LIMIT = 1000  # images scored for the mistakes gallery (and searched for CAM examples)
DEFAULT_CAM_PER_CLASS = 2
DEFAULT_TSNE_POINTS = 500
DEFAULT_MISTAKES = 24
GALLERY_SIDE = 112  # px the gallery images are shown at (small ones are enlarged by the browser, pixelated)
MAX_GALLERY_SIDE = 160  # larger images are shrunk to this before they are embedded
CAM_SIDE = 160  # Grad-CAM overlays are drawn at least this large
SECTIONS = (  # (id, title), in page order; the test checks each id
    ("config", "Configuration"),
    ("curves", "Training curves"),
    ("accuracy", "Test accuracy"),
    ("confusion", "Confusion matrix"),
    ("mistakes", "Most confident mistakes"),
    ("cam", "Grad-CAM"),
    ("tsne", "t-SNE of the penultimate features"),
    ("model", "Model summary"),
)


@dataclass
class ReportOptions:
    split: str = "test"
    dataset: str | None = None  # another dataset than the run's (same classes)
    data_dir: str | os.PathLike | None = None
    device: torch.device | str = "cpu"
    batch_size: int = 128
    limit: int = DEFAULT_LIMIT
    cam_per_class: int = DEFAULT_CAM_PER_CLASS
    tsne_points: int = DEFAULT_TSNE_POINTS
    mistakes: int = DEFAULT_MISTAKES
    map_classes_by_position: bool = False
    seed: int = 0
    progress: bool = True  # tqdm bars on stderr for the long parts


@dataclass
class Section:
    id: str
    title: str
    missing: str | None = None  # why the section has nothing to show
    notes: list[str] = field(default_factory=list)
    content: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- images

def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def png_from_drawing(draw: Callable[[Path], Any]) -> bytes:
    """The PNG that ``draw(path)`` writes (for the project's path-based plotting functions)."""
    with tempfile.TemporaryDirectory(prefix="classicnets-report-") as folder:
        path = Path(folder) / "figure.png"
        draw(path)
        return path.read_bytes()


def image_png(pixels: torch.Tensor, max_side: int = MAX_GALLERY_SIDE) -> bytes:
    """One ``[C, H, W]`` image in [0, 1] as a PNG, shrunk to at most ``max_side`` a side."""
    from PIL import Image

    array = (pixels.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    if array.shape[0] == 1:
        image = Image.fromarray(array[0].numpy(), mode="L")
    else:
        image = Image.fromarray(array[:3].permute(1, 2, 0).contiguous().numpy(), mode="RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def pil_png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- the run's files

def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def read_metrics(path: Path) -> list[dict[str, float]]:
    """metrics.csv as rows of numbers (empty cells skipped); a ValueError when it is malformed."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = []
        for row in csv.DictReader(handle):
            values = {key: float(value) for key, value in row.items() if key and value not in (None, "")}
            if "epoch" not in values:
                raise ValueError("a row has no epoch")
            values["epoch"] = int(values["epoch"])
            rows.append(values)
    return rows


def read_summary(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("it is not a JSON object")
    return data


def percent(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


# ----------------------------------------------------------------------------- the report

def build_report(source: str | os.PathLike, options: ReportOptions | None = None) -> str:
    """The HTML page of the run at ``source`` (a run directory or its ``best.safetensors``)."""
    options = options or ReportOptions()
    run_dir = run_home(source)
    if not run_dir.is_dir():
        raise UserError(f"{source} does not exist; give a run directory written by classicnets train.")
    sections = {key: Section(key, title) for key, title in SECTIONS}
    settings_text = read_text(run_dir / "config.yaml")
    _config_section(sections["config"], run_dir, settings_text)
    _curves_section(sections["curves"], run_dir)
    summary = _accuracy_section(sections["accuracy"], run_dir)
    model, metadata, weights_problem = _load_weights(source, options.device)
    _model_section(sections["model"], metadata, weights_problem)

    data_sections = [sections[key] for key in ("mistakes", "cam", "tsne")]
    scored = None
    if model is None:
        for section in data_sections:
            section.missing = f"no trained weights to run: {weights_problem}"
    else:
        split, problem = _load_split(source, metadata, options)
        if split is None:
            for section in data_sections:
                section.missing = f"the {options.split} images could not be loaded: {problem}"
        else:
            try:
                scored = _galleries(sections["mistakes"], sections["cam"], model, metadata, split, options, source)
            except UserError as error:  # e.g. weights that give NaN
                sections["mistakes"].missing = sections["cam"].missing = str(error)
            try:
                _tsne_section(sections["tsne"], model, split, options, source)
            except UserError as error:
                sections["tsne"].missing = str(error)
    _confusion_section(sections["confusion"], run_dir, scored, options)

    title_model = (metadata or {}).get("model") or _setting(settings_text, "model") or "run"
    title_dataset = (metadata or {}).get("dataset") or _setting(settings_text, "dataset") or ""
    context = {
        "title": f"{title_model} on {title_dataset}".strip() if title_dataset else title_model,
        "run_dir": str(run_dir.resolve()),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "headline": _headline(summary, metadata, scored),
        "sections": [sections[key] for key, _ in SECTIONS],
        "gallery_side": GALLERY_SIDE,
        "split_label": options.split,
    }
    html = render(context)
    return html


def render(context: dict[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    environment = Environment(loader=PackageLoader("classicnets.analysis", "templates"), autoescape=True,
                              undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters["percent"] = percent
    template = environment.get_template(TEMPLATE)
    images = _count_images(context["sections"])
    return template.render(**context, images_expected=images)


def _count_images(sections: Sequence[Section]) -> int:
    count = 0
    for section in sections:
        if section.missing:
            continue
        content = section.content
        count += sum(1 for key in ("figure",) if content.get(key))
        count += len(content.get("items", ()))
        count += sum(len(row["items"]) for row in content.get("rows", ()))
    return count


def _setting(config_text: str | None, key: str) -> str | None:
    if not config_text:
        return None
    for line in config_text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key and value.strip():
            return value.strip().strip("'\"")
    return None


def _headline(summary: dict[str, Any] | None, metadata: dict[str, Any] | None,
              scored: "Scored | None") -> list[tuple[str, str]]:
    """A few (label, value) pairs shown at the top of the page."""
    items = []
    if summary is not None:
        items.append(("test accuracy", percent(summary.get("test_accuracy"))))
        if "best_val_accuracy" in summary:
            items.append(("best validation accuracy", percent(summary["best_val_accuracy"])))
        if "best_epoch" in summary:
            items.append(("best epoch", f"{summary['best_epoch']} of {summary.get('epochs', '?')}"))
        if isinstance(summary.get("wall_time_s"), (int, float)):
            items.append(("wall time", _duration(summary["wall_time_s"])))
        if summary.get("device"):
            items.append(("device", str(summary["device"])))
    elif metadata is not None:
        items.append(("best validation accuracy", percent(metadata.get("val_accuracy"))))
        items.append(("best epoch so far", str(metadata.get("epoch", "?"))))
    if scored is not None:
        items.append((f"top-1 on the {scored.count:,} images scored here", percent(scored.accuracy)))
    return items


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"


# ----------------------------------------------------------------------------- sections from files

def _config_section(section: Section, run_dir: Path, text: str | None) -> None:
    if text is None:
        section.missing = f"no config.yaml in {run_dir}."
        return
    section.content["text"] = text


def _curves_section(section: Section, run_dir: Path) -> None:
    """The curves drawn from metrics.csv; the run's curves.png when there is no readable CSV."""
    from ..engine.reports import curves_figure

    metrics_path, curves_path = run_dir / "metrics.csv", run_dir / "curves.png"
    rows, problem = None, None
    if metrics_path.is_file():
        try:
            rows = read_metrics(metrics_path)
        except (ValueError, KeyError, OSError) as error:
            problem = f"metrics.csv could not be read ({error})"
    else:
        problem = "no metrics.csv (no epoch has finished yet)"
    if rows:
        try:
            figure = curves_figure(rows, f"{run_dir.name}: loss and accuracy per epoch")
            if len({row["epoch"] for row in rows}) == 1:  # one point: the axis would show 0.95 .. 1.05
                epoch = rows[0]["epoch"]
                for axes in figure.axes:
                    axes.set_xlim(epoch - 1, epoch + 1)
                    axes.set_xticks([epoch])
            section.content["figure"] = data_uri(figure_png(figure))
        except KeyError as error:
            section.notes.append(f"metrics.csv lacks the column {error}; only the table is shown.")
        columns = [c for c in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds",
                               "images_per_s") if any(c in row for row in rows)]
        section.content["columns"] = columns
        section.content["table"] = [[_metric_cell(column, row.get(column)) for column in columns] for row in rows]
        return
    if curves_path.is_file():
        section.content["figure"] = data_uri(curves_path.read_bytes())
        section.notes.append(f"{problem}; this is the run's own curves.png.")
        return
    section.missing = f"{problem}, and no curves.png."


def _metric_cell(column: str, value: float | None) -> str:
    if value is None:
        return ""
    if column == "epoch":
        return str(int(value))
    if column.endswith("_acc"):
        return f"{100 * value:.2f}%"
    if column == "lr":
        return f"{value:.3g}"
    if column in ("epoch_seconds", "images_per_s"):
        return f"{value:,.1f}"
    return f"{value:.4f}"


def _accuracy_section(section: Section, run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "summary.json"
    if not path.is_file():
        section.missing = ("no summary.json: the run has not finished its test yet (it is written once, "
                           "after the last epoch).")
        return None
    try:
        summary = read_summary(path)
    except (ValueError, OSError) as error:
        section.missing = f"summary.json could not be read ({error})."
        return None
    section.content["overall"] = [
        (label, value) for label, value in (
            ("test accuracy", percent(summary.get("test_accuracy"))),
            ("test loss", f"{summary['test_loss']:.4f}" if isinstance(summary.get("test_loss"), (int, float))
             else None),
            ("test images", f"{summary['test_images']:,}" if isinstance(summary.get("test_images"), int) else None),
            ("best validation accuracy", percent(summary["best_val_accuracy"])
             if "best_val_accuracy" in summary else None),
            ("best epoch", f"{summary['best_epoch']} of {summary.get('epochs', '?')}"
             if "best_epoch" in summary else None),
        ) if value is not None]
    per_class = summary.get("per_class_test_accuracy")
    if isinstance(per_class, dict) and per_class:
        section.content["per_class"] = [
            {"name": str(name), "text": percent(value),
             "width": round(100 * value, 1) if isinstance(value, (int, float)) and math.isfinite(value) else 0}
            for name, value in per_class.items()]
    else:
        section.notes.append("summary.json has no per-class accuracy.")
    return summary


def _confusion_section(section: Section, run_dir: Path, scored: "Scored | None", options: ReportOptions) -> None:
    from ..engine.reports import plot_confusion_matrix
    from .metrics import confusion_matrix

    path = run_dir / "confusion_matrix.png"
    if path.is_file():
        section.content["figure"] = data_uri(path.read_bytes())
        section.notes.append("the run's own confusion matrix: the whole test split, best weights.")
        return
    if scored is None:
        section.missing = "no confusion_matrix.png (the run has not finished its test) and no images were scored here."
        return
    predictions = scored.probs.argmax(dim=1)
    confusion = confusion_matrix(predictions, scored.targets, scored.probs.shape[1])
    title = f"first {scored.count:,} {options.split} images: top-1 {percent(scored.accuracy)}"
    section.content["figure"] = data_uri(png_from_drawing(
        lambda target: plot_confusion_matrix(target, confusion, scored.class_names, title)))
    section.notes.append(f"the run has no confusion_matrix.png yet; this one is of the first {scored.count:,} "
                         f"{options.split} images scored for this report.")


def _load_weights(source: str | os.PathLike, device) -> tuple[Any, dict[str, Any] | None, str | None]:
    from ..engine.checkpoint import load_run

    try:
        model, metadata = load_run(source, device=device)
    except UserError as error:
        return None, None, str(error)
    return model, metadata, None


def _model_section(section: Section, metadata: dict[str, Any] | None, problem: str | None) -> None:
    from ..models import create_model
    from .summary import format_summary, summarize

    if metadata is None:
        section.missing = f"no trained weights to describe: {problem}"
        return
    size, channels = int(metadata["image_size"]), int(metadata["in_chans"])
    with torch.device("meta"):  # shapes and counts only: nothing is allocated
        model = create_model(metadata["model"], num_classes=int(metadata["num_classes"]), in_chans=channels,
                             **metadata.get("model_kwargs", {}))
    try:
        summary = summarize(model, size, channels, 1, name=metadata["model"])
    except UserError as error:
        section.missing = f"the model could not be summarised at {size} px: {error}"
        return
    section.content["blocks"] = format_summary(summary, view="blocks")
    section.content["layers"] = format_summary(summary, view="layers")
    section.notes.append(f"measured from the model at the run's input, 1x{channels}x{size}x{size}.")


# ----------------------------------------------------------------------------- sections from the data

@dataclass
class Scored:
    probs: torch.Tensor
    targets: torch.Tensor
    class_names: list[str]

    @property
    def count(self) -> int:
        return int(self.targets.numel())

    @property
    def accuracy(self) -> float:
        return float((self.probs.argmax(dim=1) == self.targets).double().mean())


def _load_split(source, metadata: dict[str, Any], options: ReportOptions):
    from .run_data import load_run_split

    try:
        split = load_run_split(source, metadata, options.split, image_size=int(metadata["image_size"]),
                               device=options.device, batch_size=options.batch_size, dataset=options.dataset,
                               data_dir=options.data_dir, limit=max(options.limit, options.tsne_points),
                               map_classes_by_position=options.map_classes_by_position)
    except (UserError, OSError) as error:
        return None, str(error)
    return split, None


Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def _first(batches: Batches, count: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``count`` images of ``batches``."""
    seen = 0
    for images, labels in batches:
        if seen >= count:
            return
        images, labels = images[:count - seen], labels[:count - seen]
        seen += labels.numel()
        yield images, labels


def _bar(iterable, total: int, desc: str, unit: str, options: ReportOptions):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr,
                disable=not options.progress)


def _galleries(mistakes_section: Section, cam_section: Section, model, metadata: dict[str, Any], split,
               options: ReportOptions, source) -> Scored:
    """Score the first ``limit`` images (keeping the most confident mistakes and the first
    ``cam_per_class`` images of each class), then fill both gallery sections."""
    from .evaluation_report import run_evaluation
    from .figures import denormalize
    from .tta import TTAConfig

    count = min(options.limit, split.num_images)
    num_classes = len(split.class_names)
    examples: dict[int, list[torch.Tensor]] = {c: [] for c in range(num_classes)}

    def collect(batches):
        for images, labels in batches:
            for image, label in zip(images, labels.tolist()):
                if len(examples[label]) < options.cam_per_class:
                    examples[label].append(image.detach().float().cpu())
            yield images, labels

    batches = _bar(collect(_first(split.batches, count)), -(-count // options.batch_size), "scoring", "batch",
                   options)
    evaluation = run_evaluation(model, batches, TTAConfig("none", image_size=int(metadata["image_size"])),
                                num_mistakes=options.mistakes, weights=str(source),
                                data=f"the {split.dataset} {options.split} images")
    scored = Scored(evaluation.probs, evaluation.targets, list(split.class_names))
    mapping = split.mapping_note()

    found = evaluation.mistakes
    pixels = denormalize(found.images, split.mean, split.std) if found.indices.numel() else []
    mistakes_section.content["items"] = [
        {"src": data_uri(image_png(pixels[i])), "true": split.class_names[int(found.targets[i])],
         "predicted": split.class_names[int(found.predictions[i])], "confidence": float(found.confidence[i]),
         "index": int(found.indices[i])}
        for i in range(found.indices.numel())]
    mistakes_section.notes.append(
        f"the {len(mistakes_section.content['items'])} most confident wrong predictions among the first "
        f"{scored.count:,} {split.dataset} {options.split} images (top-1 there: {percent(scored.accuracy)}); "
        f"--limit scores more.")
    if mapping:
        mistakes_section.notes.append(mapping)
    if not mistakes_section.content["items"]:
        mistakes_section.notes.append("no mistakes among them.")

    if options.cam_per_class == 0:
        cam_section.missing = "--cam-per-class 0: no Grad-CAM images asked for."
    else:
        _cam_gallery(cam_section, model, metadata, split, examples, options)
    return scored


def _cam_gallery(section: Section, model, metadata: dict[str, Any], split, examples: dict[int, list[torch.Tensor]],
                 options: ReportOptions) -> None:
    from .cam import cam_layer, grad_cam, overlay
    from .figures import denormalize

    size, channels = int(metadata["image_size"]), int(metadata["in_chans"])
    device = next(model.parameters()).device
    try:
        layer_name, layer = cam_layer(model, torch.zeros(1, channels, size, size, device=device))
    except UserError as error:
        section.missing = str(error)
        return
    total = sum(len(images) for images in examples.values())
    bar = _bar(None, total, "Grad-CAM", "img", options)
    rows = []
    try:
        for label, images in examples.items():
            items = []
            for image in images:
                x = image[None].to(device)
                with torch.no_grad():
                    probs = model(x).float().softmax(dim=1)[0]
                predicted = int(probs.argmax())
                heat = grad_cam(model, x, predicted, layer)
                rgb = (denormalize(image[None], split.mean, split.std)[0] * 255).round().to(torch.uint8)
                items.append({"src": data_uri(pil_png(overlay(rgb, heat.cpu(), min_size=CAM_SIDE))),
                              "predicted": split.class_names[predicted], "confidence": float(probs[predicted]),
                              "correct": predicted == label, "flat": not bool(heat.max() > 0)})
                bar.update(1)
            rows.append({"name": split.class_names[label], "items": items})
    finally:
        bar.close()
    section.content["rows"] = rows
    section.notes.append(f"the first {options.cam_per_class} images of each class among the first "
                         f"{min(options.limit, split.num_images):,} {options.split} images, each with the map of "
                         f"its predicted class, taken at {layer_name} (the deepest block whose map is at least "
                         f"4x4 at {size} px).")
    if any(item["flat"] for row in rows for item in row["items"]):
        section.notes.append("a \"flat\" map is one colour: no location raised the predicted class's score "
                             "(common for a barely trained network).")
    absent = [row["name"] for row in rows if not row["items"]]
    if absent:
        section.notes.append(f"no image of {', '.join(absent)} among them; --limit searches more.")


def _tsne_section(section: Section, model, split, options: ReportOptions, source) -> None:
    from .embed import extract_embeddings, plot_embedding, project_2d

    count = min(options.tsne_points, split.num_images)
    if count < 3:
        section.missing = f"t-SNE needs at least 3 images; {count} asked for (--tsne-points) or available."
        return
    batches = _bar(_first(split.batches, count), -(-count // options.batch_size), "features", "batch", options)
    embeddings = extract_embeddings(model, batches, count, weights=str(source),
                                    data=f"the {split.dataset} {options.split} images")
    with _bar(None, 1, f"t-SNE of {len(embeddings.labels):,} points", "map", options) as bar:
        points = project_2d(embeddings.features, "tsne", options.seed)
        bar.update(1)
    title = f"t-SNE of the first {len(embeddings.labels):,} {split.dataset} {options.split} images"
    section.content["figure"] = data_uri(png_from_drawing(
        lambda target: plot_embedding(target, points, embeddings.labels, split.class_names, title)))
    section.notes.append(f"penultimate features ({embeddings.features.shape[1]}-d, what the last linear layer "
                         f"reads) of {len(embeddings.labels):,} images, coloured by true class; --tsne-points "
                         f"changes how many.")
