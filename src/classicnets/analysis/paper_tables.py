"""The papers' own tables, with the figures computed from our models beside them.

The printed values below are paper data, transcribed by hand. Everything in the
"ours" columns is measured from a model built on the meta device at its paper's
setting: 224x224 RGB input and 1000 classes unless said otherwise below.

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
* LeNet-5, Section II.B (LeCun et al., 1998): per layer C1 ... F6 the feature maps,
  trainable parameters and connections (biases counted as connections), for
  ``lenet5_paper`` at 32x32, 1 channel, 10 classes, or the modern ``lenet5``.
* AlexNet, Section 3 and Figure 2 (Krizhevsky et al., 2012): kernels, output shapes and
  the neuron counts "253,440-186,624-64,896-64,896-43,264-4096-4096-1000" per layer, and
  the "60 million parameters". Printed 224x224 does not give the printed 55x55 maps with
  an 11x11/4 unpadded conv; we compare at the input that does (227) and say what 224 gives.
* ResNet, Table 1 (He et al., 2015): output sizes, the layers of each stage for 18 to 152
  layers and the "FLOPs" row, which counts multiply-adds (convolutions and the FC layer;
  batch norm left out), for the paper's stride placement and torchvision's v1.5; and the
  CIFAR-10 networks of Section 4.2 with Table 6's parameter counts.
* Inception v3, Table 1 of "Rethinking the Inception Architecture" (Szegedy et al., 2015):
  type, patch/stride and input size per row; the released network, which we build,
  differs from the printed table in the stem and in the number of 17x17 modules.

Models are built through the registry, or, for the families not registered yet, by
their module builders (:func:`_build`). Which table a name gets is the small mapping
:data:`PAPER_TABLES`, by model name or family; a registered model with none is a
:class:`UserError`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch
from torch import nn

from ..errors import UnknownModelError, UserError
from ..models import create_model, get_model_entry, list_models, run_or_refuse_input
from ..models.alexnet import AlexNet
from ..models.googlenet import Inception
from ..models.inception3 import Inception3, Inception8, Inception17, Inception35
from ..models.lenet import EuclideanRBF, LeNet5, PartialConv, Subsampling
from ..models.resnet import SPECS as RESNET_SPECS
from ..models.resnet import ResNet
from .summary import ForwardTrace, example_input, flop_counter, trace_forward
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



# ------------------------------------------------------------------ building and tracing

Shape = tuple[int, ...]

def _build(name: str, num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
    """``name`` built on the meta device (shapes and counts only)."""
    with torch.device("meta"):
        return create_model(name, num_classes=num_classes, in_chans=in_chans)


def _require(model: nn.Module, kind: type, name: str, table: str) -> None:
    if not isinstance(model, kind):
        raise UserError(f"{table} compares {kind.__name__} models, and {name} is not one.")


@dataclass(frozen=True)
class _Shapes:
    """Input and output shape of every module at its first call in one eval forward."""

    inputs: dict[nn.Module, Shape]
    outputs: dict[nn.Module, Shape]


def _trace_shapes(model: nn.Module, input_size: int, in_chans: int, name: str) -> _Shapes:
    return _trace(model, input_size, in_chans, name)[0]


def _trace(model: nn.Module, input_size: int, in_chans: int, name: str) -> tuple[_Shapes, int]:
    """Shapes and multiply-adds (convolutions and linear layers, batch norm left out, as
    the papers count) of one eval forward of a single image."""
    x = example_input(model, input_size, in_chans, batch_size=1)
    inputs: dict[nn.Module, Shape] = {}
    outputs: dict[nn.Module, Shape] = {}

    def record(module: nn.Module, args: tuple, output: object) -> None:
        if module not in outputs and isinstance(output, torch.Tensor):
            first = args[0] if args and isinstance(args[0], torch.Tensor) else None
            inputs[module] = tuple(first.shape) if first is not None else ()
            outputs[module] = tuple(output.shape)

    handles = [module.register_forward_hook(record) for module in model.modules()]
    model.eval()
    try:
        with flop_counter(count_batch_norm=False) as counter, torch.no_grad():
            run_or_refuse_input(model, x, name, f"a {in_chans}x{input_size}x{input_size} input")
    finally:
        for handle in handles:
            handle.remove()
    return _Shapes(inputs, outputs), counter.get_total_flops() // 2


def _input_side(conv: nn.Conv2d, printed_input: int, printed_map: int) -> int:
    """The printed input side if the first convolution turns it into the printed map
    side; otherwise the smallest side that does (the input the architecture needs)."""
    (k, _), (s, _), (p, _) = conv.kernel_size, conv.stride, conv.padding
    if (printed_input + 2 * p - k) // s + 1 == printed_map:
        return printed_input
    return (printed_map - 1) * s + k - 2 * p


def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def _check(mismatches: tuple[str, ...] | list[str]) -> str:
    return ", ".join(mismatches) if mismatches else "ok"


def _footer(rows: list, label: Callable[[object], str]) -> str:
    differing = [label(r) for r in rows if r.mismatches]
    return f"{len(differing)} of {len(rows)} rows differ" + (f": {', '.join(differing)}." if differing else ".")


_CHECK_LEGEND = ("check: 'ok', or which printed figures do not follow from the architecture "
                 "(they differ from ours).")


# ------------------------------------------------------------------ LeNet-5

@dataclass(frozen=True)
class LeNetPaperRow:
    """One layer of Section II.B: its feature maps and printed counts."""

    layer: str  # "C1" ... "F6", as model.blocks() names them
    kind: str  # "convolution", "subsampling", "full"
    output: tuple[int, int, int]  # height, width, maps (F6: 1x1x84)
    params: int  # trainable parameters
    connections: int


LENET5_LAYERS: tuple[LeNetPaperRow, ...] = (
    LeNetPaperRow("C1", "convolution", (28, 28, 6), 156, 122_304),
    LeNetPaperRow("S2", "subsampling", (14, 14, 6), 12, 5_880),
    LeNetPaperRow("C3", "convolution", (10, 10, 16), 1_516, 151_600),
    LeNetPaperRow("S4", "subsampling", (5, 5, 16), 32, 2_000),
    LeNetPaperRow("C5", "convolution", (1, 1, 120), 48_120, 48_120),  # "48,120 trainable connections"
    LeNetPaperRow("F6", "full", (1, 1, 84), 10_164, 10_164),  # "10,164 trainable parameters"
)
LENET5_TRAINABLE = 60_000  # trainable parameters in all (the RBF output layer's are fixed)
LENET5_INPUT = 32  # the paper's 32x32 input (28x28 digits padded)
LENET5_SETTING = {"in_chans": 1, "num_classes": 10}


@dataclass(frozen=True)
class LeNetRowComparison:
    layer: str
    paper: LeNetPaperRow | None  # None: the output layer (total: the "total" row), printed without figures
    kind: str  # ours: "convolution", "convolution (Table I)", "subsampling", "max pool", "full", "RBF"
    output: tuple[int, int, int] | None
    params: int  # trainable parameters
    connections: int
    mismatches: tuple[str, ...]  # "type", "output", "params", "connections"


@dataclass(frozen=True)
class LeNetComparison:
    model_name: str
    input_size: int
    rows: tuple[LeNetRowComparison, ...]  # C1 ... F6, output, total


def compare_lenet5(model_name: str = "lenet5_paper") -> LeNetComparison:
    """Section II.B's figures beside ours, layer by layer, for a LeNet-5 model."""
    model = _build(model_name, **LENET5_SETTING)
    _require(model, LeNet5, model_name, "LeNet-5's Section II.B")
    size = _input_side(_first_conv(model), LENET5_INPUT, LENET5_LAYERS[0].output[0])
    shapes = _trace_shapes(model, size, LENET5_SETTING["in_chans"], model_name)
    printed = {row.layer: row for row in LENET5_LAYERS}
    rows = []
    for layer, module in [*model.blocks(), ("output", model.head)]:
        out = shapes.outputs.get(module)
        output = _hwc(out)
        positions = out[2] * out[3] if out is not None and len(out) == 4 else 1
        channels = out[1] if out is not None else 0
        params = sum(p.numel() for p in module.parameters() if p.requires_grad)
        connections = positions * _lenet_connections_per_position(module, channels)
        kind = _lenet_kind(module)
        paper = printed.get(layer)
        mismatches = () if paper is None else tuple(label for label, differs in (
            ("type", kind.split(" (")[0] != paper.kind),
            ("output", output != paper.output),
            ("params", params != paper.params),
            ("connections", connections != paper.connections),
        ) if differs)
        rows.append(LeNetRowComparison(layer, paper, kind, output, params, connections, mismatches))
    total_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rows.append(LeNetRowComparison(
        "total", None, "", None, total_params, sum(r.connections for r in rows),
        ("params",) if total_params != LENET5_TRAINABLE else ()))
    return LeNetComparison(model_name, size, tuple(rows))


def _lenet_connections_per_position(module: nn.Module, maps: int) -> int:
    """Connections into the units at one output position (all maps), biases included."""
    total = 0
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):  # each unit: its weights' inputs plus a bias
            total += layer.weight.numel() + (layer.bias.numel() if layer.bias is not None else 0)
        elif isinstance(layer, Subsampling):  # window inputs plus a bias per unit
            total += layer.weight.numel() * (layer.window ** 2 + 1)
        elif isinstance(layer, nn.MaxPool2d):  # window inputs, no bias
            k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
            total += maps * k * k
        elif isinstance(layer, EuclideanRBF):  # each unit reads every F6 state
            total += layer.centres.numel()
    return total


def _lenet_kind(module: nn.Module) -> str:
    for layer in module.modules():
        if isinstance(layer, PartialConv):
            return "convolution (Table I)"
        if isinstance(layer, nn.Conv2d):
            return "convolution"
        if isinstance(layer, Subsampling):
            return "subsampling"
        if isinstance(layer, nn.MaxPool2d):
            return "max pool"
        if isinstance(layer, nn.Linear):
            return "full"
        if isinstance(layer, EuclideanRBF):
            return "RBF"
    return type(module).__name__


def format_lenet5(comparison: LeNetComparison) -> str:
    def printed(value: int | None) -> str:
        return "" if value is None else format_count(value)

    body = []
    for r in comparison.rows:
        paper = r.paper
        total = r.layer == "total"
        body.append([
            r.layer, paper.kind if paper else "", r.kind,
            _fmt_hwc(paper.output) if paper else "", "" if total else _fmt_hwc(r.output),
            format_count(LENET5_TRAINABLE) if total else printed(paper and paper.params),
            format_count(r.params),
            printed(paper and paper.connections), format_count(r.connections),
            _check(r.mismatches) if paper or total else "",
        ])
    table = render_table(
        ["layer", "type", "ours", "output", "ours", "params", "ours", "connections", "ours", "check"],
        body, ["l", "l", "l", "l", "l", "r", "r", "r", "r", "l"])
    compared = [r for r in comparison.rows if r.paper or r.layer == "total"]
    size = comparison.input_size
    return "\n".join([
        f"LeNet-5, Section II.B (LeCun et al., 1998), each printed figure followed by ours from "
        f"{comparison.model_name} at {size}x{size}, {LENET5_SETTING['in_chans']} channel, "
        f"{LENET5_SETTING['num_classes']} classes.",
        "output: height x width x maps; params: trainable parameters; connections: inputs into every "
        "unit, a bias counting as one (weight sharing is why the two differ).",
        "",
        table,
        "",
        f"{_CHECK_LEGEND} The paper prints no per-layer figures for the output layer.",
        _footer(compared, lambda r: r.layer),
    ])


# ------------------------------------------------------------------ AlexNet

@dataclass(frozen=True)
class AlexNetPaperRow:
    layer: str
    kernels: tuple[int, int, int] | None  # count, side, depth ("96 kernels of size 11x11x3")
    stride: int | None  # printed for conv1 only
    output: tuple[int, int, int]  # Figure 2, both GPUs together (FC layers: 1x1xunits)
    neurons: int  # "253,440-186,624-64,896-64,896-43,264-4096-4096-1000"


ALEXNET_INPUT = (224, 224, 3)  # "150,528-dimensional"
ALEXNET_INPUT_NEURONS = 150_528
ALEXNET_PARAMS_M = 60  # "60 million parameters"
ALEXNET_LAYERS: tuple[AlexNetPaperRow, ...] = (
    AlexNetPaperRow("conv1", (96, 11, 3), 4, (55, 55, 96), 253_440),
    AlexNetPaperRow("conv2", (256, 5, 48), None, (27, 27, 256), 186_624),
    AlexNetPaperRow("conv3", (384, 3, 256), None, (13, 13, 384), 64_896),
    AlexNetPaperRow("conv4", (384, 3, 192), None, (13, 13, 384), 64_896),
    AlexNetPaperRow("conv5", (256, 3, 192), None, (13, 13, 256), 43_264),
    AlexNetPaperRow("fc6", None, None, (1, 1, 4096), 4096),
    AlexNetPaperRow("fc7", None, None, (1, 1, 4096), 4096),
    AlexNetPaperRow("fc8", None, None, (1, 1, 1000), 1000),
)


@dataclass(frozen=True)
class AlexNetRowComparison:
    layer: str
    paper: AlexNetPaperRow | None  # None: the input row
    kernels: tuple[int, int, int] | None  # ours: count, side, depth per kernel (per group)
    stride: int | None
    output: tuple[int, int, int] | None
    neurons: int
    params: int | None
    mismatches: tuple[str, ...]  # "input", "kernels", "stride", "output", "neurons"


@dataclass(frozen=True)
class AlexNetComparison:
    model_name: str
    input_size: int
    rows: tuple[AlexNetRowComparison, ...]  # input, conv1 ... conv5, fc6 ... fc8
    params: int
    at_printed_input: tuple[tuple[str, tuple[int, int, int] | None], ...]  # conv outputs at 224 px


def compare_alexnet(model_name: str = "alexnet_paper") -> AlexNetComparison:
    """Section 3's kernels, Figure 2's shapes and the printed neuron counts beside ours."""
    model = _build(model_name, num_classes=1000, in_chans=3)
    _require(model, AlexNet, model_name, "AlexNet's Section 3")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if (len(convs), len(linears)) != (5, 3):
        raise UserError(f"AlexNet's Section 3 compares five convolutions and three FC layers, "
                        f"and {model_name} has {len(convs)} and {len(linears)}.")
    printed_side = ALEXNET_INPUT[0]
    size = _input_side(convs[0], printed_side, ALEXNET_LAYERS[0].output[0])
    shapes = _trace_shapes(model, size, 3, model_name)
    rows = [AlexNetRowComparison(
        "input", None, None, None, (size, size, 3), size * size * 3, None,
        ("input",) if size != printed_side else ())]
    for paper, module in zip(ALEXNET_LAYERS, [*convs, *linears]):
        output = _hwc(shapes.outputs.get(module))
        kernels = stride = None
        if isinstance(module, nn.Conv2d):
            kernels = (module.out_channels, module.kernel_size[0], module.weight.shape[1])
            stride = module.stride[0]
        neurons = output[0] * output[1] * output[2] if output else 0
        mismatches = tuple(label for label, differs in (
            ("kernels", paper.kernels is not None and kernels != paper.kernels),
            ("stride", paper.stride is not None and stride != paper.stride),
            ("output", output != paper.output),
            ("neurons", neurons != paper.neurons),
        ) if differs)
        params = sum(p.numel() for p in module.parameters())
        rows.append(AlexNetRowComparison(paper.layer, paper, kernels, stride, output, neurons, params, mismatches))
    at_printed: tuple = ()
    if size != printed_side:  # what the printed input gives instead
        small = _trace_shapes(model, printed_side, 3, model_name)
        at_printed = tuple((paper.layer, _hwc(small.outputs.get(conv))) for paper, conv in zip(ALEXNET_LAYERS, convs))
    return AlexNetComparison(model_name, size, tuple(rows), sum(p.numel() for p in model.parameters()), at_printed)


def _fmt_kernels(kernels: tuple[int, int, int] | None, stride: int | None) -> str:
    if kernels is None:
        return ""
    count, side, depth = kernels
    return f"{count} x {side}x{side}x{depth}" + (f" /{stride}" if stride and stride != 1 else "")


def format_alexnet(comparison: AlexNetComparison) -> str:
    body = []
    for r in comparison.rows:
        paper = r.paper
        body.append([
            r.layer,
            _fmt_kernels(paper.kernels, paper.stride) if paper else "", _fmt_kernels(r.kernels, r.stride),
            _fmt_hwc(paper.output if paper else ALEXNET_INPUT), _fmt_hwc(r.output),
            format_count(paper.neurons if paper else ALEXNET_INPUT_NEURONS), format_count(r.neurons),
            "" if r.params is None else format_count(r.params),
            _check(r.mismatches),
        ])
    table = render_table(
        ["layer", "kernels", "ours", "output", "ours", "neurons", "ours", "params (ours)", "check"],
        body, ["l", "l", "l", "l", "l", "r", "r", "r", "l"])
    size = comparison.input_size
    off = (comparison.params - ALEXNET_PARAMS_M * 1e6) / (ALEXNET_PARAMS_M * 1e6)
    params_check = "ok" if abs(off) <= TOLERANCE else f"differs, {off:+.0%}"
    lines = [
        f"AlexNet, Section 3 and Figure 2 (Krizhevsky et al., 2012), each printed figure followed by ours "
        f"from {comparison.model_name} at {size}x{size}, 3 channels, 1000 classes.",
        "kernels: count x height x width x depth, the depth per group where a layer sees only its own GPU's "
        "maps; /stride where printed; output: height x width x channels; neurons: their product.",
        "",
        table,
        "",
        _CHECK_LEGEND,
        _footer(list(comparison.rows), lambda r: r.layer),
    ]
    for r in comparison.rows:
        if "neurons" in r.mismatches and r.output is not None and r.paper is not None:
            h, w, c = r.output
            lines.append(f"{r.layer}: printed {format_count(r.paper.neurons)} neurons; "
                         f"{h}x{w}x{c} = {format_count(r.neurons)}.")
    if comparison.at_printed_input:
        p = ALEXNET_INPUT[0]
        shapes = ", ".join(f"{layer} {_fmt_hwc(hwc)}" for layer, hwc in comparison.at_printed_input)
        lines.append(f"input: the printed {p}x{p} does not give the printed {_fmt_hwc(ALEXNET_LAYERS[0].output)} "
                     f"conv1 maps; {size}x{size} is the smallest that does. At {p}x{p} ours gives: {shapes}.")
    lines.append(f"parameters: ours {format_count(comparison.params)}, printed \"{ALEXNET_PARAMS_M} million\" "
                 f"({params_check}; within {TOLERANCE:.0%} counts as ok).")
    return "\n".join(lines)


# ------------------------------------------------------------------ ResNet

RESNET_TABLE1_OUTPUTS = {"conv1": (112, 112), "conv2_x": (56, 56), "conv3_x": (28, 28),
                         "conv4_x": (14, 14), "conv5_x": (7, 7), "head": (1, 1)}
RESNET_TABLE1_CONV1 = "7x7, 64, stride 2"
RESNET_TABLE1_POOL = "3x3 max pool, stride 2"
RESNET_TABLE1_HEAD = "average pool, 1000-d fc, softmax"
RESNET_TABLE1_STAGES: dict[int, tuple[str, str, str, str]] = {  # conv2_x ... conv5_x per depth
    18: ("[3x3, 64; 3x3, 64] x2", "[3x3, 128; 3x3, 128] x2",
         "[3x3, 256; 3x3, 256] x2", "[3x3, 512; 3x3, 512] x2"),
    34: ("[3x3, 64; 3x3, 64] x3", "[3x3, 128; 3x3, 128] x4",
         "[3x3, 256; 3x3, 256] x6", "[3x3, 512; 3x3, 512] x3"),
    50: ("[1x1, 64; 3x3, 64; 1x1, 256] x3", "[1x1, 128; 3x3, 128; 1x1, 512] x4",
         "[1x1, 256; 3x3, 256; 1x1, 1024] x6", "[1x1, 512; 3x3, 512; 1x1, 2048] x3"),
    101: ("[1x1, 64; 3x3, 64; 1x1, 256] x3", "[1x1, 128; 3x3, 128; 1x1, 512] x4",
          "[1x1, 256; 3x3, 256; 1x1, 1024] x23", "[1x1, 512; 3x3, 512; 1x1, 2048] x3"),
    152: ("[1x1, 64; 3x3, 64; 1x1, 256] x3", "[1x1, 128; 3x3, 128; 1x1, 512] x8",
          "[1x1, 256; 3x3, 256; 1x1, 1024] x36", "[1x1, 512; 3x3, 512; 1x1, 2048] x3"),
}
RESNET_TABLE1_FLOPS = {18: "1.8", 34: "3.6", 50: "3.8", 101: "7.6", 152: "11.3"}  # x10^9 multiply-adds
# Our models per depth: the paper's stride placement (stride 2 on a bottleneck's first
# 1x1) first, then torchvision's v1.5 (on the 3x3) where it differs.
RESNET_IMAGENET_MODELS = {18: ("resnet18",), 34: ("resnet34",), 50: ("resnet50_paper", "resnet50"),
                          101: ("resnet101_paper", "resnet101"), 152: ("resnet152_paper", "resnet152")}
# CIFAR-10, Section 4.2: three stages on 32, 16, 8 maps with 16, 32, 64 filters and
# 1+2n, 2n, 2n layers; Table 6: parameters in millions per depth 6n+2.
RESNET_CIFAR_MAPS = (32, 16, 8)
RESNET_CIFAR_FILTERS = (16, 32, 64)
RESNET_TABLE6_PARAMS_M = {20: "0.27", 32: "0.46", 44: "0.66", 56: "0.85", 110: "1.7"}
RESNET_CIFAR_MODELS = {20: "resnet20", 32: "resnet32", 44: "resnet44", 56: "resnet56", 110: "resnet110"}
RESNET_CIFAR_SETTING = {"input_size": 32, "in_chans": 3, "num_classes": 10}


@dataclass(frozen=True)
class ResNetTable1Row:
    layer: str  # "conv1", "conv2_x", ..., "head"
    depth: int | None  # None: the row is the same for every depth
    paper: str  # the printed cell
    ours: str  # the same, read from our modules ("a / b" where our depths differ)
    paper_output: tuple[int, int]  # the layer's output size
    output: str  # ours, "HxW" ("a / b" where our depths differ)
    mismatches: tuple[str, ...]  # "output", "layers"


@dataclass(frozen=True)
class ResNetTable1:
    model_names: tuple[str, ...]  # one per depth, 18 ... 152
    rows: tuple[ResNetTable1Row, ...]


@dataclass(frozen=True)
class ResNetFlopsRow:
    depth: int
    model_name: str
    stride_on: str  # where a bottleneck stage's stride 2 sits: "1x1 (paper)", "3x3 (v1.5)", "3x3 (basic)"
    layers: int  # weight layers on the main path
    params: int
    paper_flops: str  # x10^9, as printed
    macs: int
    check: str  # "ok", or why the printed figure does not follow within rounding


def _resnet_main_convs(block: nn.Module) -> list[nn.Conv2d]:
    """A residual block's own convolutions, in order (the projection shortcut left out)."""
    return [m for _, m in block.named_children() if isinstance(m, nn.Conv2d)]


def _resnet_stage_notation(stage: nn.Sequential) -> str:
    """"[3x3, 64; 3x3, 64] x2", from the stage's blocks."""
    kinds = []
    for block in stage:
        convs = "; ".join(f"{c.kernel_size[0]}x{c.kernel_size[1]}, {c.out_channels}" for c in _resnet_main_convs(block))
        kinds.append(f"[{convs}]")
    runs = [(kind, kinds.count(kind)) for kind in dict.fromkeys(kinds)]
    return " ".join(f"{kind} x{count}" for kind, count in runs)


def _resnet_depth(model: ResNet) -> int:
    """Weight layers on the main path: the stem conv, every block's convs, the FC layer."""
    return 1 + sum(len(_resnet_main_convs(block)) for stage in model.stages for block in stage) + 1


def _resnet_stride_on(model: ResNet) -> str:
    block = model.stages[1][0]  # conv3_1, which downsamples
    convs = _resnet_main_convs(block)
    strided = next((c for c in convs if c.stride[0] > 1), None)
    if strided is None:
        return "-"
    where = f"{strided.kernel_size[0]}x{strided.kernel_size[1]}"
    if len(convs) == 2:
        return f"{where} (basic)"
    return f"{where} ({'paper' if strided is convs[0] else 'v1.5'})"


@dataclass(frozen=True)
class _ResNetTrace:
    model: ResNet  # on the meta device: it holds no memory
    shapes: _Shapes
    macs: int


@lru_cache(maxsize=None)
def _resnet_trace(name: str, input_size: int = 224, num_classes: int = 1000) -> _ResNetTrace:
    """One ResNet built and run once for all the ResNet tables (Table 1 and its FLOPs
    row share five of their models)."""
    model = _build(name, num_classes=num_classes, in_chans=3)
    _require(model, ResNet, name, "ResNet's tables")
    shapes, macs = _trace(model, input_size, 3, name)
    return _ResNetTrace(model, shapes, macs)


def compare_resnet_table1(paper_strides: bool = True) -> ResNetTable1:
    """Table 1's rows beside ours, for 18 to 152 layers (bottleneck models with the
    paper's stride placement, or torchvision's v1.5: the table reads the same)."""
    models = {depth: names[0] if paper_strides else names[-1] for depth, names in RESNET_IMAGENET_MODELS.items()}
    traces = {depth: _resnet_trace(name) for depth, name in models.items()}
    built = {depth: trace.model for depth, trace in traces.items()}
    shapes = {depth: trace.shapes for depth, trace in traces.items()}

    def side(depth: int, module: nn.Module) -> str:
        out = shapes[depth].outputs.get(module)
        return "-" if out is None else f"{out[2]}x{out[3]}" if len(out) == 4 else "1x1"

    def joined(values: list[str]) -> str:
        return " / ".join(dict.fromkeys(values))

    def row(layer: str, depth: int | None, paper: str, ours: str, output: str) -> ResNetTable1Row:
        printed_output = RESNET_TABLE1_OUTPUTS[layer]
        mismatches = tuple(label for label, differs in (
            ("output", output != "x".join(map(str, printed_output))),
            ("layers", ours != paper),
        ) if differs)
        return ResNetTable1Row(layer, depth, paper, ours, printed_output, output, mismatches)

    def shared_row(layer: str, paper: str, ours: list[str], outputs: list[str]) -> ResNetTable1Row:
        return row(layer, None, paper, joined(ours), joined(outputs))

    depths = list(built)
    rows = [
        shared_row("conv1", RESNET_TABLE1_CONV1,
                   [f"{m.conv1.kernel_size[0]}x{m.conv1.kernel_size[1]}, {m.conv1.out_channels}, "
                    f"stride {m.conv1.stride[0]}" for m in built.values()],
                   [side(d, built[d].conv1) for d in depths]),
        shared_row("conv2_x", RESNET_TABLE1_POOL,
                   [_pool_notation(m.maxpool) for m in built.values()],
                   [side(d, built[d].layer1) for d in depths]),
    ]
    for index, layer in enumerate(("conv2_x", "conv3_x", "conv4_x", "conv5_x")):
        for depth in depths:
            stage = built[depth].stages[index]
            rows.append(row(layer, depth, RESNET_TABLE1_STAGES[depth][index], _resnet_stage_notation(stage),
                            side(depth, stage)))
    rows.append(shared_row("head", RESNET_TABLE1_HEAD,
                           [f"average pool, {m.fc.out_features}-d fc, softmax" for m in built.values()],
                           [side(d, built[d].avgpool) for d in depths]))
    return ResNetTable1(tuple(models.values()), tuple(rows))


def _pool_notation(pool: nn.Module) -> str:
    if not isinstance(pool, nn.MaxPool2d):
        return type(pool).__name__
    k = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
    s = pool.stride if isinstance(pool.stride, int) else pool.stride[0]
    return f"{k}x{k} max pool, stride {s}"


def compare_resnet_flops() -> list[ResNetFlopsRow]:
    """Table 1's "FLOPs" (multiply-adds at 224 px) beside ours for every ImageNet model."""
    rows = []
    for depth, names in RESNET_IMAGENET_MODELS.items():
        for name in names:
            trace = _resnet_trace(name)
            model, macs = trace.model, trace.macs
            rows.append(ResNetFlopsRow(depth, name, _resnet_stride_on(model), _resnet_depth(model),
                                       sum(p.numel() for p in model.parameters()),
                                       RESNET_TABLE1_FLOPS[depth], macs,
                                       _rounding_check(macs / 1e9, RESNET_TABLE1_FLOPS[depth])))
    return rows


def _rounding_check(ours: float, printed: str) -> str:
    """"ok" when ours, rounded to the printed decimals, is the printed figure; else why not."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    rounded = f"{ours:.{decimals}f}"
    if rounded == printed:
        return "ok"
    scale = 10 ** decimals
    if f"{int(ours * scale) / scale:.{decimals}f}" == printed:
        return f"rounds to {rounded} ({printed} if truncated)"
    return f"rounds to {rounded}, {(ours - float(printed)) / float(printed):+.0%}"


@dataclass(frozen=True)
class ResNetCifarRow:
    depth: int  # printed
    model_name: str
    layers: tuple[int, ...]  # ours: stem convs, then each stage's (the FC layer apart)
    weight_layers: int
    maps: tuple[int, ...]  # ours: each stage's output side
    filters: tuple[int, ...]  # ours: each stage's output channels
    params: int
    paper_params_m: str
    mismatches: tuple[str, ...]  # "depth", "layers", "maps", "filters", "params"


def compare_resnet_cifar() -> list[ResNetCifarRow]:
    """Section 4.2's layout and Table 6's parameter counts beside ours."""
    rows = []
    size = RESNET_CIFAR_SETTING["input_size"]
    for depth, name in RESNET_CIFAR_MODELS.items():
        trace = _resnet_trace(name, size, RESNET_CIFAR_SETTING["num_classes"])
        model, shapes = trace.model, trace.shapes
        stage_outputs = [shapes.outputs[stage] for stage in model.stages]
        per_stage = [sum(len(_resnet_main_convs(b)) for b in stage) for stage in model.stages]
        layers = (sum(isinstance(m, nn.Conv2d) for m in model.conv1.modules()), *per_stage)
        n = (depth - 2) // 6
        params = sum(p.numel() for p in model.parameters())
        weight_layers = _resnet_depth(model)
        maps = tuple(out[2] for out in stage_outputs)
        filters = tuple(out[1] for out in stage_outputs)
        paper_m = RESNET_TABLE6_PARAMS_M[depth]
        mismatches = tuple(label for label, differs in (
            ("depth", weight_layers != depth),
            ("layers", layers != (1, 2 * n, 2 * n, 2 * n)),
            ("maps", maps != RESNET_CIFAR_MAPS),
            ("filters", filters != RESNET_CIFAR_FILTERS),
            ("params", _rounding_check(params / 1e6, paper_m) != "ok"),
        ) if differs)
        rows.append(ResNetCifarRow(depth, name, layers, weight_layers, maps, filters, params, paper_m, mismatches))
    return rows


def format_resnet_table1(table1: ResNetTable1, flops: list[ResNetFlopsRow]) -> str:
    names = ", ".join(dict.fromkeys(r.model_name for r in flops))
    rows = list(table1.rows)
    body = []
    for index, r in enumerate(rows):
        same_layer = index > 0 and rows[index - 1].layer == r.layer  # shown once, as the paper does
        body.append([
            "" if same_layer else r.layer,
            "" if same_layer else "x".join(map(str, r.paper_output)),
            "" if same_layer and "output" not in r.mismatches else r.output,
            "all" if r.depth is None else str(r.depth), r.paper, r.ours, _check(r.mismatches),
        ])
    table = render_table(["layer", "output", "ours", "depth", "layers", "ours", "check"],
                         body, ["l", "l", "l", "r", "l", "l", "l"])
    flops_body = [[
        str(r.depth), r.model_name, r.stride_on, str(r.layers), format_count(r.params),
        r.paper_flops, f"{r.macs / 1e9:.2f}", r.check,
    ] for r in flops]
    flops_table = render_table(
        ["depth", "model", "stride 2 on", "layers (ours)", "params (ours)", "FLOPs x10^9", "ours", "check"],
        flops_body, ["r", "l", "l", "r", "r", "r", "r", "l"])
    models = " / ".join(table1.model_names)
    flagged = [r for r in flops if r.check != "ok"]
    return "\n".join([
        f"ResNet, Table 1 (He et al., 2015), each printed column followed by ours from {models} "
        f"at 224x224, 3 channels, 1000 classes.",
        "layers: [kernel, filters; ...] x blocks per stage, read from our modules (projection shortcuts "
        "apart); output: height x width.",
        "",
        table,
        "",
        _CHECK_LEGEND,
        _footer(rows, lambda r: f"{r.layer} {r.depth or ''}".strip()),
        "",
        f"Table 1's FLOPs row beside ours from {names}: the paper's \"FLOPs\" are multiply-adds "
        "(convolutions and the FC layer; batch norm left out), here in units of 10^9.",
        "The bottleneck models put a stage's stride 2 on the first 1x1 conv as the paper does, or on "
        "the 3x3 conv as torchvision does (v1.5); parameters are the same.",
        "",
        flops_table,
        "",
        "check: 'ok' when ours rounds to the printed figure.",
        f"{len(flagged)} of {len(flops)} models do not round to the printed figure"
        + (f": {', '.join(r.model_name for r in flagged)}." if flagged else "."),
    ])


def format_resnet_cifar(rows: list[ResNetCifarRow]) -> str:
    def seq(values: tuple[int, ...], sep: str = ", ") -> str:
        return sep.join(str(v) for v in values)

    body = [[
        r.model_name, str(r.depth), str(r.weight_layers), f"{r.layers[0]}+{seq(r.layers[1:], ' | ')}",
        seq(r.maps), seq(r.filters),
        r.paper_params_m, f"{r.params / 1e6:.{len(r.paper_params_m.split('.')[1])}f}", format_count(r.params),
        _check(r.mismatches),
    ] for r in rows]
    table = render_table(
        ["model", "depth", "ours", "layers (ours)", "maps (ours)", "filters (ours)", "params (M)", "ours",
         "ours exact", "check"],
        body, ["l", "r", "r", "l", "l", "l", "r", "r", "r", "l"])
    s = RESNET_CIFAR_SETTING
    n_pattern = "1+2n | 2n | 2n"
    return "\n".join([
        f"ResNet on CIFAR-10, Section 4.2 and Table 6 (He et al., 2015): depth 6n+2 and parameters in "
        f"millions, beside ours at {s['input_size']}x{s['input_size']}, {s['in_chans']} channels, "
        f"{s['num_classes']} classes.",
        f"Section 4.2 prints the layout: weight layers {n_pattern} per stage (plus the FC layer), maps "
        f"{seq(RESNET_CIFAR_MAPS)}, filters {seq(RESNET_CIFAR_FILTERS)}; ours are read from the network. "
        "Shortcuts are option A (no parameters).",
        "",
        table,
        "",
        "check: 'ok', or what differs: depth, layers, maps or filters at all, params when ours does not "
        "round to the printed figure.",
        _footer(rows, lambda r: r.model_name),
    ])


# ------------------------------------------------------------------ Inception v3

@dataclass(frozen=True)
class InceptionV3PaperRow:
    """One row of Table 1 of "Rethinking the Inception Architecture", and our modules."""

    kind: str  # "conv", "conv padded", "pool", "3xInception", "linear", "softmax"
    patch: str  # "3x3/2"; "As in figure 5"; "logits" ...
    input: tuple[int, int, int]  # height, width, channels
    modules: tuple[str, ...]  # our modules the row describes, in order
    read_output: bool = False  # the row's input is the output of its module (softmax)


INCEPTION_V3_INPUT = 299
INCEPTION_V3_TABLE1: tuple[InceptionV3PaperRow, ...] = (
    InceptionV3PaperRow("conv", "3x3/2", (299, 299, 3), ("Conv2d_1a_3x3",)),
    InceptionV3PaperRow("conv", "3x3/1", (149, 149, 32), ("Conv2d_2a_3x3",)),
    InceptionV3PaperRow("conv padded", "3x3/1", (147, 147, 32), ("Conv2d_2b_3x3",)),
    InceptionV3PaperRow("pool", "3x3/2", (147, 147, 64), ("maxpool1",)),
    InceptionV3PaperRow("conv", "3x3/1", (73, 73, 64), ("Conv2d_3b_1x1",)),
    InceptionV3PaperRow("conv", "3x3/2", (71, 71, 80), ("Conv2d_4a_3x3",)),
    InceptionV3PaperRow("conv", "3x3/1", (35, 35, 192), ("maxpool2",)),
    InceptionV3PaperRow("3xInception", "As in figure 5", (35, 35, 288), ("Mixed_5b", "Mixed_5c", "Mixed_5d")),
    InceptionV3PaperRow("5xInception", "As in figure 6", (17, 17, 768),
                        ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")),
    InceptionV3PaperRow("2xInception", "As in figure 7", (8, 8, 1280), ("Mixed_7b", "Mixed_7c")),
    InceptionV3PaperRow("pool", "8x8", (8, 8, 2048), ("avgpool",)),
    InceptionV3PaperRow("linear", "logits", (1, 1, 2048), ("fc",)),
    # Our network returns logits; the softmax lives in the loss, so its input is fc's output.
    InceptionV3PaperRow("softmax", "classifier", (1, 1, 1000), ("fc",), read_output=True),
)
# The figure each of our module classes follows (their docstrings say so).
_INCEPTION_FIGURE = {Inception35: 5, Inception17: 6, Inception8: 7}


@dataclass(frozen=True)
class InceptionV3RowComparison:
    paper: InceptionV3PaperRow
    kind: str
    patch: str
    input: tuple[int, int, int] | None
    mismatches: tuple[str, ...]  # "type", "patch", "input", "modules"


@dataclass(frozen=True)
class InceptionV3Comparison:
    model_name: str
    rows: tuple[InceptionV3RowComparison, ...]
    reductions: tuple[tuple[str, tuple[int, int, int] | None, tuple[int, int, int] | None], ...]  # not rows
    params: int
    inference_params: int


def compare_inception_v3_table1(model_name: str = "inception_v3") -> InceptionV3Comparison:
    """Every row of Table 1 beside the same figures read from ``model_name`` at 299 px."""
    model = _build(model_name, num_classes=1000, in_chans=3)
    _require(model, Inception3, model_name, "Inception v3's Table 1")
    shapes = _trace_shapes(model, INCEPTION_V3_INPUT, 3, model_name)
    rows = []
    for paper in INCEPTION_V3_TABLE1:
        modules = [model.get_submodule(name) for name in paper.modules]
        first = modules[0]
        shape = shapes.outputs.get(first) if paper.read_output else shapes.inputs.get(first)
        kind, patch = _inception_row_kind(paper, modules, shapes)
        mismatches = [label for label, differs in (
            ("type", not _same_kind(paper.kind, kind)),
            ("patch", paper.kind in ("conv", "conv padded", "pool") and patch != paper.patch),
            ("input", _hwc(shape) != paper.input),
        ) if differs]
        if paper.kind.endswith("Inception"):
            mismatches = [("modules" if label == "type" else label) for label in mismatches]
            if patch != paper.patch:
                mismatches.append("figure")
        rows.append(InceptionV3RowComparison(paper, kind, patch, _hwc(shape), tuple(mismatches)))
    in_rows = {name for paper in INCEPTION_V3_TABLE1 for name in paper.modules}
    reductions = tuple((name, _hwc(shapes.inputs.get(module)), _hwc(shapes.outputs.get(module)))
                       for name, module in model.named_children()
                       if name.startswith("Mixed") and name not in in_rows)
    aux = model.AuxLogits
    aux_params = sum(p.numel() for p in aux.parameters()) if aux is not None else 0
    params = sum(p.numel() for p in model.parameters())
    return InceptionV3Comparison(model_name, tuple(rows), reductions, params, params - aux_params)


def _inception_row_kind(paper: InceptionV3PaperRow, modules: list[nn.Module], shapes: _Shapes) -> tuple[str, str]:
    if paper.read_output:
        return "softmax", "in the loss"
    if paper.kind.endswith("Inception"):
        figures = [_INCEPTION_FIGURE.get(type(m)) for m in modules]
        listed = ", ".join(dict.fromkeys(str(f) if f else type(m).__name__ for f, m in zip(figures, modules)))
        return f"{len(modules)}xInception", f"As in figure {listed}"
    module = modules[0]
    conv = getattr(module, "conv", module)
    if isinstance(conv, nn.Conv2d):
        (kh, kw), (s, _) = conv.kernel_size, conv.stride
        padded = conv.padding != "valid" if isinstance(conv.padding, str) else any(conv.padding)
        return ("conv padded" if padded else "conv"), f"{kh}x{kw}/{s}"
    if isinstance(module, nn.MaxPool2d):
        k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        s = module.stride if isinstance(module.stride, int) else module.stride[0]
        return "max pool", f"{k}x{k}/{s}"
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
        shape = shapes.inputs.get(module)
        return "avg pool", f"{shape[2]}x{shape[3]}" if shape and len(shape) == 4 else "?"
    if isinstance(module, nn.Linear):
        return "linear", "logits"
    return type(module).__name__, ""


def _same_kind(printed: str, ours: str) -> bool:
    if printed.endswith("Inception"):
        return printed == ours  # the count: "5xInception"
    return printed == ours or (printed == "pool" and ours in ("max pool", "avg pool"))


def _module_span(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"


def _inception_row_label(r: InceptionV3RowComparison) -> str:
    patch = "" if r.paper.kind.endswith("Inception") else f" {r.paper.patch}"
    return f"{r.paper.kind}{patch} on {_fmt_hwc(r.paper.input)}"


def format_inception_v3_table1(comparison: InceptionV3Comparison) -> str:
    body = [[
        r.paper.kind, r.kind, r.paper.patch, r.patch, _fmt_hwc(r.paper.input), _fmt_hwc(r.input),
        _check(r.mismatches), _module_span(r.paper.modules),
    ] for r in comparison.rows]
    table = render_table(["type", "ours", "patch/stride", "ours", "input", "ours", "check", "our modules"],
                         body, ["l", "l", "l", "l", "l", "l", "l", "l"])
    reductions = "; ".join(f"{name} {_fmt_hwc(i)} -> {_fmt_hwc(o)}" for name, i, o in comparison.reductions)
    return "\n".join([
        f"Inception v3, Table 1 (Szegedy et al., 2015, \"Rethinking the Inception Architecture\"), each "
        f"printed column followed by ours from {comparison.model_name} at {INCEPTION_V3_INPUT}x"
        f"{INCEPTION_V3_INPUT}, 3 channels, 1000 classes.",
        "input: the row's input, height x width x channels; an Inception row's type is its module count "
        "and its patch the figure the modules follow.",
        "",
        table,
        "",
        "check: 'ok', or what does not follow from the architecture: type (or module count), patch/stride, "
        "input size, figure.",
        _footer(list(comparison.rows), _inception_row_label),
        f"Grid reductions (figure 10), which the table leaves out: {reductions or 'none'}.",
        f"parameters (ours): {format_count(comparison.inference_params)} for inference, "
        f"{format_count(comparison.params)} with the auxiliary classifier.",
    ])


# ------------------------------------------------------------------ which table for which name

def _vgg_table(name: str) -> str:
    return format_vgg_table2(compare_vgg_table2())


def _googlenet_table(name: str) -> str:
    return format_googlenet_table1(compare_googlenet_table1(name), name)


def _lenet_table(name: str) -> str:
    return format_lenet5(compare_lenet5("lenet5_paper" if name == "lenet" else name))


def _alexnet_table(name: str) -> str:
    # "alexnet" is both the family and torchvision's layout: the family word shows both.
    names = ("alexnet_paper", "alexnet") if name == "alexnet" else (name,)
    return "\n\n".join(format_alexnet(compare_alexnet(n)) for n in names)


def _resnet_table(name: str) -> str:
    parts = []
    if name not in RESNET_CIFAR_MODELS.values():
        paper_strides = not name.endswith(("resnet50", "resnet101", "resnet152"))
        parts.append(format_resnet_table1(compare_resnet_table1(paper_strides), compare_resnet_flops()))
    if name == "resnet" or name in RESNET_CIFAR_MODELS.values():
        parts.append(format_resnet_cifar(compare_resnet_cifar()))
    return "\n\n".join(parts)


def _inception_v3_table(name: str) -> str:
    return format_inception_v3_table1(compare_inception_v3_table1(name))


# Family words, then model names; a registered model not listed here gets its family's
# entry, and a family without one has no paper table.
PAPER_FAMILIES = ("vgg", "googlenet", "lenet", "alexnet", "resnet", "inception_v3")
PAPER_TABLES: dict[str, Callable[[str], str]] = {
    "vgg": _vgg_table,
    "googlenet": _googlenet_table,
    "lenet": _lenet_table,
    "alexnet": _alexnet_table,
    "resnet": _resnet_table,
    "inception_v3": _inception_v3_table,
    "lenet5_paper": _lenet_table,
    "lenet5": _lenet_table,
    "alexnet_paper": _alexnet_table,
    **{name: _resnet_table for name in RESNET_SPECS},
}


def paper_table(name: str) -> str:
    """The paper table for a model or a family word (:data:`PAPER_FAMILIES`): "vgg" or any
    VGG model gives VGG's Table 2, a GoogLeNet model Table 1 beside that model, "resnet"
    ResNet's Tables 1 and 6, and so on."""
    table = PAPER_TABLES.get(name)
    if table is None:
        table = PAPER_TABLES.get(_registered_family(name))
    if table is None:
        raise UserError(f"{name} has no paper table; --paper covers {_covered()}.")
    return table(name)


def _registered_family(name: str) -> str:
    try:
        return get_model_entry(name).family
    except UnknownModelError:
        known = list(dict.fromkeys([*PAPER_FAMILIES, *list_models()]))
        close = difflib.get_close_matches(name, known, n=4, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}.{hint} --paper takes a model "
                                f"(see 'classicnets models') or one of {_covered()}.") from None


def _covered() -> str:
    return f"the families {', '.join(PAPER_FAMILIES[:-1])} and {PAPER_FAMILIES[-1]}, and their models"
