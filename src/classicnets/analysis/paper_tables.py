"""The papers' own tables, with the figures computed from our models beside them.

The printed values below are paper data, transcribed by hand. Everything in the
"ours" columns is measured from a model built on the meta device at the papers'
setting: 224x224 RGB input, 1000 classes.

* GoogLeNet, Table 1 (Szegedy et al., 2014): output size, depth, parameters and
  operations per row. The paper's "params" are thousands of weights with K = 1024,
  counting conv and linear weight tensors only (no biases, no batch norm); its "ops"
  are millions of multiply-adds, counted the same way (convolutions and linear
  layers; batch norm, which the paper's network did not have, is left out). A few printed rows do not follow from the
  architecture (the 7x7 convolution, inception 4c and 5a); the comparison flags every
  row whose figures differ by more than :data:`TOLERANCE`.
* VGG, Table 2 (Simonyan & Zisserman, 2014): parameters in millions for configurations
  A to E, with the configuration column of Table 1 and the weight-layer count derived
  from our modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..models import create_model, get_model_entry
from ..models.googlenet import Inception
from .summary import ForwardTrace, example_input, trace_forward
from .text_table import format_count, render_table

TOLERANCE = 0.03  # relative difference beyond which a printed figure "does not follow"

PAPER_SETTING = {"input_size": 224, "in_chans": 3, "num_classes": 1000}


@dataclass(frozen=True)
class GoogLeNetPaperRow:
    """One row of GoogLeNet's Table 1, and which of our modules implement it."""

    kind: str  # "convolution", "max pool", "inception (3a)", ...
    patch: str  # "7x7/2"; "" where the paper leaves it empty
    output: tuple[int, int, int]  # height, width, channels
    depth: int
    filters: tuple[int, ...] | None  # #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
    params_k: float | None  # thousands of weights (K = 1024)
    ops_m: float | None  # millions of multiply-adds
    modules: tuple[str, ...]  # our modules whose weights and work the row describes
    output_module: str  # our module whose output is the row's output


def _inception(name: str, output: tuple[int, int, int], filters: tuple[int, ...],
               params_k: float, ops_m: float) -> GoogLeNetPaperRow:
    module = f"inception{name}"
    return GoogLeNetPaperRow(f"inception ({name})", "", output, 2, filters, params_k, ops_m, (module,), module)


def _pool(kind: str, patch: str, output: tuple[int, int, int], module: str) -> GoogLeNetPaperRow:
    return GoogLeNetPaperRow(kind, patch, output, 0, None, None, None, (module,), module)


GOOGLENET_TABLE1: tuple[GoogLeNetPaperRow, ...] = (
    GoogLeNetPaperRow("convolution", "7x7/2", (112, 112, 64), 1, None, 2.7, 34, ("conv1",), "conv1"),
    _pool("max pool", "3x3/2", (56, 56, 64), "pool1"),
    GoogLeNetPaperRow("convolution", "3x3/1", (56, 56, 192), 2, (64, 192), 112, 360,
                      ("conv2_reduce", "conv2"), "conv2"),
    _pool("max pool", "3x3/2", (28, 28, 192), "pool2"),
    _inception("3a", (28, 28, 256), (64, 96, 128, 16, 32, 32), 159, 128),
    _inception("3b", (28, 28, 480), (128, 128, 192, 32, 96, 64), 380, 304),
    _pool("max pool", "3x3/2", (14, 14, 480), "pool3"),
    _inception("4a", (14, 14, 512), (192, 96, 208, 16, 48, 64), 364, 73),
    _inception("4b", (14, 14, 512), (160, 112, 224, 24, 64, 64), 437, 88),
    _inception("4c", (14, 14, 512), (128, 128, 256, 24, 64, 64), 463, 100),
    _inception("4d", (14, 14, 528), (112, 144, 288, 32, 64, 64), 580, 119),
    _inception("4e", (14, 14, 832), (256, 160, 320, 32, 128, 128), 840, 170),
    _pool("max pool", "3x3/2", (7, 7, 832), "pool4"),
    _inception("5a", (7, 7, 832), (256, 160, 320, 32, 128, 128), 1072, 54),
    _inception("5b", (7, 7, 1024), (384, 192, 384, 48, 128, 128), 1388, 71),
    _pool("avg pool", "7x7/1", (1, 1, 1024), "avgpool"),
    _pool("dropout (40%)", "", (1, 1, 1024), "dropout"),
    GoogLeNetPaperRow("linear", "", (1, 1, 1000), 1, None, 1000, 1, ("fc",), "fc"),
    # Our network returns logits; the softmax lives in the loss, so its output is fc's.
    GoogLeNetPaperRow("softmax", "", (1, 1, 1000), 0, None, None, None, (), "fc"),
)

# VGG Table 2: parameters in millions; Table 1: weight layers per configuration.
VGG_TABLE2_PARAMS_M = {"A": 133, "A-LRN": 133, "B": 133, "C": 134, "D": 138, "E": 144}
VGG_TABLE1_WEIGHT_LAYERS = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}
VGG_MODEL_NAMES = {"A": "vgg11", "A-LRN": "vgg11_lrn", "B": "vgg13", "C": "vgg16_c", "D": "vgg16", "E": "vgg19"}


@dataclass(frozen=True)
class GoogLeNetRowComparison:
    paper: GoogLeNetPaperRow
    output: tuple[int, int, int] | None  # None: the module did not run
    depth: int
    filters: tuple[int, ...] | None  # output channels of the row's convolutions, in order
    params_k: float | None  # computed like the paper: conv/linear weights / 1024
    ops_m: float | None  # multiply-adds / 1e6
    mismatches: tuple[str, ...]  # "output", "depth", "filters", "params", "ops"


@dataclass(frozen=True)
class VggRowComparison:
    config: str
    model_name: str
    layout: str  # Table 1's column, from our modules: "conv3-64 | conv3-128 | ..."
    weight_layers: int
    paper_weight_layers: int
    params: int
    paper_params_m: int

    @property
    def params_m(self) -> int:
        return round(self.params / 1e6)

    @property
    def matches(self) -> bool:
        return self.params_m == self.paper_params_m and self.weight_layers == self.paper_weight_layers


def build_at_paper_setting(name: str) -> nn.Module:
    with torch.device("meta"):  # shapes and counts only: nothing is allocated
        return create_model(name, num_classes=PAPER_SETTING["num_classes"], in_chans=PAPER_SETTING["in_chans"])


def paper_weight_count(module: nn.Module) -> int:
    """Weights the way the papers count them: conv and linear weight tensors only."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def weight_depth(module: nn.Module) -> int:
    """Weight layers on the longest path: layers in sequence add up, an inception
    module's parallel branches count as deep as the deepest one."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return 1
    depths = [weight_depth(child) for child in module.children()]
    if isinstance(module, Inception):
        return max(depths, default=0)
    return sum(depths)


def compare_googlenet_table1(model_name: str = "googlenet", tolerance: float = TOLERANCE) -> list[GoogLeNetRowComparison]:
    """Every row of Table 1 beside the same figures computed from ``model_name``."""
    if get_model_entry(model_name).family != "googlenet":
        raise UserError(f"GoogLeNet's Table 1 compares GoogLeNet models, and {model_name} is not one.")
    model = build_at_paper_setting(model_name)
    x = example_input(model, PAPER_SETTING["input_size"], PAPER_SETTING["in_chans"], batch_size=1)
    trace = trace_forward(model, x, training=False, name=model_name, count_batch_norm=False)
    return [_compare_row(row, model, trace, tolerance) for row in GOOGLENET_TABLE1]


def _compare_row(row: GoogLeNetPaperRow, model: nn.Module, trace: ForwardTrace,
                 tolerance: float) -> GoogLeNetRowComparison:
    modules = [model.get_submodule(name) for name in row.modules]
    output = _hwc(trace.shapes.get(row.output_module))
    depth = sum(weight_depth(m) for m in modules)
    filters = tuple(m.out_channels for module in modules for m in module.modules()
                    if isinstance(m, nn.Conv2d)) if row.filters else None
    params_k = sum(paper_weight_count(m) for m in modules) / 1024 if row.params_k is not None else None
    ops_m = sum(trace.macs.get(name, 0) for name in row.modules) / 1e6 if row.ops_m is not None else None
    mismatches = [label for label, differs in (
        ("output", output != row.output),
        ("depth", depth != row.depth),
        ("filters", filters != row.filters),
        ("params", _off(params_k, row.params_k, tolerance)),
        ("ops", _off(ops_m, row.ops_m, tolerance)),
    ) if differs]
    return GoogLeNetRowComparison(row, output, depth, filters, params_k, ops_m, tuple(mismatches))


def _hwc(shape: tuple[int, ...] | None) -> tuple[int, int, int] | None:
    if shape is None:
        return None
    if len(shape) == 2:  # (batch, features) after flatten: the paper writes 1x1xC
        return (1, 1, shape[1])
    return (shape[2], shape[3], shape[1])


def _off(computed: float | None, printed: float | None, tolerance: float) -> bool:
    if computed is None or printed is None:
        return False
    return abs(computed - printed) > tolerance * printed


def compare_vgg_table2() -> list[VggRowComparison]:
    """Table 2's parameter counts beside ours for configurations A, A-LRN, B, C, D, E."""
    rows = []
    for config, name in VGG_MODEL_NAMES.items():
        model = build_at_paper_setting(name)
        rows.append(VggRowComparison(
            config=config,
            model_name=name,
            layout=vgg_layout(model.features),
            weight_layers=sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()),
            paper_weight_layers=VGG_TABLE1_WEIGHT_LAYERS[config],
            params=sum(p.numel() for p in model.parameters()),
            paper_params_m=VGG_TABLE2_PARAMS_M[config],
        ))
    return rows


def vgg_layout(features: nn.Sequential) -> str:
    """The convolutional body in Table 1's notation, one "|" between stages:
    ``conv3-64 LRN | conv3-128 | conv3-256 x2 | ...``."""
    stages: list[list[str]] = [[]]
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            stages[-1].append(f"conv{layer.kernel_size[0]}-{layer.out_channels}")
        elif isinstance(layer, nn.LocalResponseNorm):
            stages[-1].append("LRN")
        elif isinstance(layer, nn.MaxPool2d):
            stages.append([])
    return " | ".join(_runs(stage) for stage in stages if stage)


def _runs(layers: list[str]) -> str:
    """["conv3-256", "conv3-256", "conv1-256"] -> "conv3-256 x2 conv1-256"."""
    parts: list[str] = []
    count = 0
    for index, layer in enumerate(layers):
        count += 1
        if index + 1 == len(layers) or layers[index + 1] != layer:
            parts.append(layer if count == 1 else f"{layer} x{count}")
            count = 0
    return " ".join(parts)


def format_googlenet_table1(rows: list[GoogLeNetRowComparison], model_name: str,
                            tolerance: float = TOLERANCE) -> str:
    body = [[
        f"{r.paper.kind}", r.paper.patch,
        _fmt_hwc(r.paper.output), _fmt_hwc(r.output),
        str(r.paper.depth), str(r.depth),
        _fmt(r.paper.params_k, "K", 0), _fmt(r.params_k, "K", 1),
        _fmt(r.paper.ops_m, "M", 0), _fmt(r.ops_m, "M", 1),
        _googlenet_check(r),
    ] for r in rows]
    table = render_table(
        ["type", "patch/stride", "output", "ours", "depth", "ours", "params", "ours", "ops", "ours", "check"],
        body, ["l", "l", "l", "l", "r", "r", "r", "r", "r", "r", "l"])
    differing = [f"{r.paper.kind} {r.paper.patch}".strip() for r in rows if r.mismatches]
    percent = f"{tolerance:.0%}"
    return "\n".join([
        f"GoogLeNet, Table 1 (Szegedy et al., 2014), each printed column followed by ours from {model_name} "
        f"at {_setting()}.",
        "params: thousands of conv and linear weights (K = 1024; biases and batch norm excluded); "
        "ops: millions of multiply-adds.",
        "",
        table,
        "",
        f"check: 'ok', or what does not follow from the architecture: output size, depth or filter counts "
        f"that differ at all, params or ops more than {percent} off (signed: ours against the paper).",
        f"{len(differing)} of {len(rows)} rows differ" + (f": {', '.join(differing)}." if differing else "."),
    ])


def _googlenet_check(r: GoogLeNetRowComparison) -> str:
    if not r.mismatches:
        return "ok"
    parts = []
    for label in r.mismatches:
        if label == "params":
            parts.append(f"params {_signed_percent(r.params_k, r.paper.params_k)}")
        elif label == "ops":
            parts.append(f"ops {_signed_percent(r.ops_m, r.paper.ops_m)}")
        else:
            parts.append(label)
    return ", ".join(parts)


def _signed_percent(computed: float | None, printed: float | None) -> str:
    assert computed is not None and printed is not None  # only called for flagged figures
    return f"{(computed - printed) / printed:+.0%}"


def _fmt(value: float | None, unit: str, decimals: int) -> str:
    if value is None:
        return ""
    return f"{value:g}{unit}" if decimals == 0 else f"{value:.{decimals}f}{unit}"


def _fmt_hwc(hwc: tuple[int, int, int] | None) -> str:
    return "-" if hwc is None else "x".join(str(d) for d in hwc)


def format_vgg_table2(rows: list[VggRowComparison]) -> str:
    body = [[
        r.config, r.model_name,
        str(r.paper_weight_layers), str(r.weight_layers),
        str(r.paper_params_m), str(r.params_m), format_count(r.params),
        "ok" if r.matches else "differs",
        r.layout,
    ] for r in rows]
    table = render_table(
        ["config", "model", "weight layers", "ours", "params (M)", "ours", "ours exact", "check", "configuration (ours)"],
        body, ["l", "l", "r", "r", "r", "r", "r", "l", "l"])
    return "\n".join([
        f"VGG, Table 2 (Simonyan & Zisserman, 2014): parameters in millions, beside ours at {_setting()}.",
        "weight layers and the configuration column (Table 1: convK-C is a KxK conv with C filters, "
        "| a 2x2 max-pool) are read from our modules.",
        "",
        table,
    ])


def _setting() -> str:
    size = PAPER_SETTING["input_size"]
    return f"{size}x{size}, {PAPER_SETTING['in_chans']} channels, {PAPER_SETTING['num_classes']} classes"


def paper_table(name: str) -> str:
    """The paper table for a model or a family: "vgg" or any VGG model gives VGG's
    Table 2; a GoogLeNet model gives Table 1 beside that model."""
    if name == "vgg" or get_model_entry(name).family == "vgg":
        return format_vgg_table2(compare_vgg_table2())
    return format_googlenet_table1(compare_googlenet_table1(name), name)
