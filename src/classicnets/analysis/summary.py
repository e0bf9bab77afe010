"""Parameter counts, multiply-adds, shapes and memory, measured from the model itself.

Nothing here is hand-entered. Parameters come from the modules, output shapes from
forward hooks, multiply-adds from :class:`torch.utils.flop_counter.FlopCounterMode`
and the memory kept for backward from autograd's saved-tensor hooks. Everything runs
on the meta device, where a VGG16 costs nothing to build or to run::

    with torch.device("meta"):
        model = create_model("vgg16")
    print(format_summary(summarize(model, input_size=224)))

Conventions:

* MACs are the multiply-accumulates of convolutions and matrix products
  (FlopCounterMode's FLOPs / 2), plus one per element for batch norm, whose
  inference form is a per-channel scale and shift (the convention of fvcore and of
  the published GoogLeNet figures: 1.50 G for torchvision's layout, 1.59 G with true
  5x5 kernels). ReLU, pooling and additions are not counted; VGG without batch norm
  is pure convolutions and matrix products (15.47 G for VGG16).
* A summary runs the model twice. The eval-mode pass is the inference network: it
  gives shapes, MACs and activation memory. The train-mode pass also runs layers that
  exist only for training (GoogLeNet's auxiliary heads), which therefore appear in the
  tables marked "train" but stay out of the inference totals, and it measures what
  autograd saves for backward.
* Rows are the modules that own parameters or do work themselves: leaf modules, plus
  any container whose own forward computes something (none in this package's models),
  so the rows always add up to the totals.
* Blocks group the rows, as the network declares them (its ``summary_blocks()``, else
  its ``blocks()``; see :mod:`~classicnets.models.protocol`). VGG: ``block1`` ..
  ``block5``, one per convolutional stage, each ending with its max-pool, then
  ``classifier`` (average pool and the three FC layers). GoogLeNet: ``stem1`` (7x7 conv,
  max-pool), ``stem2`` (1x1 reduce, 3x3 conv, max-pool), each inception module and each
  stage max-pool (``pool3``, ``pool4``), ``aux1`` / ``aux2`` where they run, and ``head``
  (average pool, dropout, linear). Other networks: each declared block with the layers
  before it, the auxiliary heads, and ``head``. Any module that declares nothing: one
  block per top-level child.
* Receptive field (RF) and jump (effective stride), in input pixels, are those of each
  row's output, followed through the forward pass itself by
  :mod:`~classicnets.analysis.receptive_field`: convolutions and pools widen the field,
  a concatenation or a sum takes its widest input (a GoogLeNet module sees as far as its
  widest branch), and after a global pool or a linear layer on flat features every output
  sees the whole input ("all"). They do not depend on the input size unless an adaptive
  pool changes what it does with it (VGG's 7x7 pool is the identity at 224 px).
* Share is a row's part of all the parameters, auxiliary heads included.
"""

from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import UserError
from ..models import protocol, run_or_refuse_input
from .receptive_field import FieldTracker, ReceptiveField, format_field
from .text_table import format_count, format_macs, format_mib, format_shape, render_table

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerRow:
    name: str  # qualified module name, e.g. "features.0"
    kind: str  # module class, e.g. "Conv2d"
    output_shape: Shape | None  # None: the module did not run
    params: int
    macs: int  # for the whole batch
    train_only: bool  # ran in the training-mode pass only (auxiliary heads)
    param_share: float  # percent of all the model's parameters
    receptive_field: ReceptiveField | None  # of the output; None: the module did not run


@dataclass(frozen=True)
class BlockRow:
    name: str
    output_shape: Shape | None
    params: int
    macs: int
    train_only: bool
    param_share: float  # percent of all the model's parameters
    receptive_field: ReceptiveField | None  # of the block's output


@dataclass(frozen=True)
class ModelSummary:
    model_name: str
    input_shape: Shape  # (batch, channels, height, width)
    layers: tuple[LayerRow, ...]
    blocks: tuple[BlockRow, ...]
    total_params: int
    trainable_params: int
    inference_params: int  # parameters of the modules the eval-mode forward uses
    macs: int  # inference (eval-mode) forward, whole batch
    train_forward_macs: int | None  # training-mode forward, auxiliary heads included
    param_bytes: int
    activation_bytes: int  # distinct tensors the modules output in the eval forward
    saved_for_backward_bytes: int | None  # None: the training-mode forward cannot run
    notes: tuple[str, ...]


@dataclass(frozen=True)
class ForwardTrace:
    """What one forward pass showed, keyed by qualified module name ("" is the root)."""

    shapes: dict[str, Shape]  # output shape at the module's first call
    finish_order: dict[str, int]  # position at which each module's first call returned
    macs: dict[str, int]  # multiply-adds of the module, its children included
    fields: dict[str, ReceptiveField]  # receptive field of the output at the first call
    total_macs: int
    activation_bytes: int
    saved_bytes: int


_BATCH_NORM_OPS = [
    getattr(torch.ops.aten, name)  # FlopCounterMode keys formulas by op packet
    for name in ("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
                 "_native_batch_norm_legit_functional", "cudnn_batch_norm")
    if hasattr(torch.ops.aten, name)
]


def _batch_norm_flops(input_shape: Shape, *args: object, **kwargs: object) -> int:
    return 2 * math.prod(input_shape)  # one multiply and one add per element


def flop_counter(count_batch_norm: bool = True) -> FlopCounterMode:
    """FlopCounterMode that also counts batch norm (see the module's conventions)."""
    extra = {op: _batch_norm_flops for op in _BATCH_NORM_OPS} if count_batch_norm else {}
    return FlopCounterMode(display=False, custom_mapping=extra)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int = 224, in_chans: int = 3, batch_size: int = 1) -> int:
    """Multiply-accumulates (see the module's conventions) of one eval-mode forward pass
    over a batch of square images; build the model on the meta device to make it free."""
    x = example_input(model, input_size, in_chans, batch_size)
    with _preserved_state(model):
        model.eval()
        with flop_counter() as counter, torch.no_grad():
            _run(model, x, type(model).__name__)
    return counter.get_total_flops() // 2


def summarize(
    model: nn.Module,
    input_size: int = 224,
    in_chans: int = 3,
    batch_size: int = 1,
    name: str | None = None,
    training_pass: bool = True,
) -> ModelSummary:
    """Per-layer and per-block table with totals; the model is left as it was given.

    ``training_pass=False`` skips the train-mode forward (half the time): train-only
    layers then show no output, and the training figures are ``None``.
    """
    name = name or type(model).__name__
    x = example_input(model, input_size, in_chans, batch_size)
    notes: list[str] = []
    train_trace: ForwardTrace | None = None
    eval_trace = trace_forward(model, x, training=False, name=name)
    if training_pass:
        try:
            train_trace = trace_forward(model, x, training=True, name=name)
        except UserError as error:  # e.g. batch norm over a single value per channel
            reason = str(error.__cause__).strip().splitlines()[0].rstrip(".")
            notes.append(f"the training-mode forward fails at this input size and batch size ({reason}), "
                         "so the memory saved for backward is not measured.")
    layers = _layer_rows(model, eval_trace, train_trace)
    return ModelSummary(
        model_name=name,
        input_shape=tuple(x.shape),
        layers=tuple(layers),
        blocks=tuple(_block_rows(model, layers, eval_trace, train_trace)),
        total_params=count_params(model),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        inference_params=_params_used(model, eval_trace),
        macs=eval_trace.total_macs,
        train_forward_macs=train_trace.total_macs if train_trace else None,
        param_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        activation_bytes=eval_trace.activation_bytes,
        saved_for_backward_bytes=train_trace.saved_bytes if train_trace else None,
        notes=tuple(notes),
    )


def example_input(model: nn.Module, input_size: int, in_chans: int, batch_size: int) -> torch.Tensor:
    """A zero batch of square images on the model's device (meta included) and dtype."""
    for label, value in (("input size", input_size), ("in_chans", in_chans), ("batch size", batch_size)):
        if value < 1:
            raise UserError(f"{label} must be a positive integer, got {value}.")
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is not None and first_conv.in_channels != in_chans:
        raise UserError(f"the model takes {first_conv.in_channels} input channels, not {in_chans}.")
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    return torch.zeros(batch_size, in_chans, input_size, input_size, device=device, dtype=dtype)


def _run(model: nn.Module, x: torch.Tensor, name: str) -> object:
    return run_or_refuse_input(model, x, name, f"a {'x'.join(str(d) for d in x.shape[1:])} input")


@contextmanager
def _preserved_state(model: nn.Module) -> Iterator[None]:
    """Restore train/eval flags and buffers (batch norm statistics) after measuring."""
    modes = {module: module.training for module in model.modules()}
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for module, mode in modes.items():
            module.training = mode


def _tensors(output: object) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):  # outputs with auxiliary heads are tuples
        return [t for item in output for t in _tensors(item)]
    return []


def trace_forward(model: nn.Module, x: torch.Tensor, training: bool = False,
                  name: str | None = None, count_batch_norm: bool = True) -> ForwardTrace:
    """Run one forward pass in eval or train mode and record what every module did.

    The model's train/eval flags and buffers are restored afterwards. In train mode
    the pass also measures the memory autograd saves for backward. Raises
    :class:`UserError` when the model cannot run on ``x``. ``count_batch_norm=False``
    counts only convolutions and matrix products, as the papers do.
    """
    with _preserved_state(model):
        model.train(training)
        return _measure(model, x, training, name or type(model).__name__, count_batch_norm)


def _measure(model: nn.Module, x: torch.Tensor, training: bool, name: str,
             count_batch_norm: bool = True) -> ForwardTrace:
    names = {module: qualname for qualname, module in model.named_modules()}
    shapes: dict[str, Shape] = {}
    finish_order: dict[str, int] = {}
    fields: dict[str, ReceptiveField] = {}
    tracker = FieldTracker(x)
    # Storages are keyed by id() and kept alive here, so an id is never reused for
    # another storage. Views and in-place results share a storage and count once;
    # this works on the meta device too, where every data pointer is 0.
    outputs: dict[int, torch.UntypedStorage] = {}
    saved: dict[int, torch.UntypedStorage] = {}
    model_state = {id(t.untyped_storage()) for t in (*model.parameters(), *model.buffers())}

    def record_output(module: nn.Module, inputs: object, output: object) -> None:
        qualname = names[module]
        tensors = _tensors(output)
        if qualname not in finish_order:
            finish_order[qualname] = len(finish_order)
            if tensors:
                shapes[qualname] = tuple(tensors[0].shape)
                field = tracker.field_of(tensors[0])
                if field is not None:
                    fields[qualname] = field
        for tensor in tensors:
            storage = tensor.untyped_storage()
            outputs.setdefault(id(storage), storage)

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        # Parameters are also saved (a conv keeps its weight for the input gradient)
        # but they are the model's memory, not the activations'.
        storage = tensor.untyped_storage()
        if id(storage) not in model_state:
            saved.setdefault(id(storage), storage)
        return tensor

    with ExitStack() as stack:
        for module in names:
            stack.callback(module.register_forward_hook(record_output).remove)
        counter = stack.enter_context(flop_counter(count_batch_norm))
        stack.enter_context(tracker)
        if training:
            stack.enter_context(torch.enable_grad())
            stack.enter_context(torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor))
        else:
            stack.enter_context(torch.no_grad())
        _run(model, x, name)
    return ForwardTrace(
        shapes=shapes,
        finish_order=finish_order,
        macs=_macs_by_module(counter, model),
        fields=fields,
        total_macs=counter.get_total_flops() // 2,
        activation_bytes=sum(s.nbytes() for s in outputs.values()),
        saved_bytes=sum(s.nbytes() for s in saved.values()),
    )


def _macs_by_module(counter: FlopCounterMode, model: nn.Module) -> dict[str, int]:
    # FlopCounterMode's ModuleTracker names the root by its class and every other
    # module "<root class>.<qualified name>"; "Global" is everything in the context.
    root = type(model).__name__
    macs: dict[str, int] = {}
    for key, per_op in counter.get_flop_counts().items():
        if key == root:
            macs[""] = sum(per_op.values()) // 2
        elif key.startswith(root + "."):
            macs[key[len(root) + 1:]] = sum(per_op.values()) // 2
    return macs


def _params_used(model: nn.Module, trace: ForwardTrace) -> int:
    used = {id(p): p for qualname, module in model.named_modules() if qualname in trace.finish_order
            for p in module.parameters(recurse=False)}
    return sum(p.numel() for p in used.values())


def _child_names(qualname: str, module: nn.Module) -> list[str]:
    return [f"{qualname}.{child}" if qualname else child for child, _ in module.named_children()]


def _layer_rows(model: nn.Module, eval_trace: ForwardTrace, train_trace: ForwardTrace | None) -> list[LayerRow]:
    rows = []
    total = count_params(model)
    counted: set[int] = set()  # a tied parameter belongs to the first module that owns it
    for qualname, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in counted]
        counted.update(id(p) for p in own)
        trace, train_only = eval_trace, False
        if qualname not in eval_trace.finish_order and train_trace and qualname in train_trace.finish_order:
            trace, train_only = train_trace, True
        children = _child_names(qualname, module)
        own_macs = trace.macs.get(qualname, 0) - sum(trace.macs.get(c, 0) for c in children)
        if children and not own and own_macs == 0:
            continue  # a pure container: its children are the rows
        params = sum(p.numel() for p in own)
        rows.append(LayerRow(
            name=qualname or "(model)",
            kind=type(module).__name__,
            output_shape=trace.shapes.get(qualname),
            params=params,
            macs=own_macs,
            train_only=train_only,
            param_share=_percent(params, total),
            receptive_field=trace.fields.get(qualname),
        ))
    # Execution order reads better than registration order (GoogLeNet registers its
    # stage pools and auxiliary heads after the last inception module).
    order = (train_trace or eval_trace).finish_order
    return sorted(rows, key=lambda row: order.get("" if row.name == "(model)" else row.name, len(order)))


def _percent(part: int, whole: int) -> float:
    return 100 * part / whole if whole else 0.0


def model_blocks(model: nn.Module, order: dict[str, int] | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """(block name, qualified names of the modules in it), as the module docstring describes;
    ``order`` (a trace's ``finish_order``) places modules by the forward pass."""
    if protocol.is_protocol_model(model):
        return protocol.summary_blocks(model, order)
    return [(child, (child,)) for child, _ in model.named_children()]


def _block_rows(model: nn.Module, layers: list[LayerRow], eval_trace: ForwardTrace,
                train_trace: ForwardTrace | None) -> list[BlockRow]:
    """Blocks in the order they run (the training pass runs every block)."""
    order_trace = train_trace or eval_trace
    never = len(order_trace.finish_order)
    members: dict[str, list[LayerRow]] = {}
    modules_of: dict[str, tuple[str, ...]] = {}
    for block, modules in model_blocks(model, order_trace.finish_order):
        modules_of[block] = modules
        members[block] = [row for row in layers if _inside(row.name, modules)]
    covered = {row.name for rows in members.values() for row in rows}
    leftovers = [row for row in layers if row.name not in covered]
    if leftovers:  # keeps the blocks adding up to the totals whatever the grouping
        members["other"], modules_of["other"] = leftovers, tuple(row.name for row in leftovers)

    def finish(qualname: str) -> int:
        return order_trace.finish_order.get(qualname, never)

    def output_of(block: str) -> tuple[Shape | None, ReceptiveField | None]:
        # The block's output is that of its module that returned last.
        for trace in (eval_trace, train_trace):
            ran = [m for m in modules_of[block] if trace is not None and m in trace.finish_order]
            if ran:
                last = max(ran, key=lambda m: trace.finish_order[m])
                return trace.shapes.get(last), trace.fields.get(last)
        return None, None

    total = count_params(model)
    rows = []
    for block, block_rows in members.items():
        shape, field = output_of(block)
        params = sum(row.params for row in block_rows)
        rows.append(BlockRow(
            name=block,
            output_shape=shape,
            params=params,
            macs=sum(row.macs for row in block_rows),
            train_only=bool(block_rows) and all(row.train_only for row in block_rows),
            param_share=_percent(params, total),
            receptive_field=field,
        ))
    first_run = {block: min((finish(m) for m in modules_of[block]), default=never) for block in members}
    return sorted(rows, key=lambda row: first_run[row.name])


def _inside(row_name: str, modules: tuple[str, ...]) -> bool:
    return any(row_name == m or row_name.startswith(m + ".") for m in modules)


def format_summary(summary: ModelSummary, view: str = "layers") -> str:
    """The per-layer (``view="layers"``) or per-block (``"blocks"``) table and the totals."""
    if view not in ("layers", "blocks"):
        raise ValueError(f"view must be 'layers' or 'blocks', got {view!r}")
    shape = "x".join(str(d) for d in summary.input_shape)
    lines = [f"{summary.model_name}: input {shape} (batch x channels x height x width)", ""]
    lines.append(_layer_table(summary) if view == "layers" else _block_table(summary))
    if any(row.train_only for row in summary.layers):
        lines.append("mode train: runs in training mode only, outside the inference totals below.")
    lines += ["", _totals(summary)]
    lines += [f"Note: {note[0].upper()}{note[1:]}" for note in summary.notes]
    return "\n".join(lines)


def _table(headers: list[str], rows: list[list[str]], train_only: list[bool], align: list[str]) -> str:
    if any(train_only):  # a "mode" column only where some rows run in training alone
        headers, align = [*headers, "mode"], [*align, "l"]
        rows = [[*row, "train" if flag else ""] for row, flag in zip(rows, train_only)]
    return render_table(headers, rows, align)


def _layer_table(summary: ModelSummary) -> str:
    rows = [[row.name, row.kind, format_shape(row.output_shape), format_count(row.params),
             _format_share(row.param_share, row.params), format_macs(row.macs), *format_field(row.receptive_field)]
            for row in summary.layers]
    return _table(["layer", "type", "output", "params", "share", "MACs", "RF", "jump"], rows,
                  [row.train_only for row in summary.layers], ["l", "l", "l", "r", "r", "r", "r", "r"])


def _block_table(summary: ModelSummary) -> str:
    rows = [[row.name, format_shape(row.output_shape), format_count(row.params),
             _format_share(row.param_share, row.params), format_macs(row.macs), *format_field(row.receptive_field)]
            for row in summary.blocks]
    return _table(["block", "output", "params", "share", "MACs", "RF", "jump"], rows,
                  [row.train_only for row in summary.blocks], ["l", "l", "r", "r", "r", "r", "r"])


def _format_share(share: float, params: int) -> str:
    # A layer without parameters shows '-'; a tiny one '<0.01%' rather than a misleading 0.00%.
    if params == 0:
        return "-"
    return "<0.01%" if share < 0.005 else f"{share:.2f}%"


def _totals(s: ModelSummary) -> str:
    batch = s.input_shape[0]
    per = "per image" if batch == 1 else f"for the batch of {batch}"
    dtypes = "float32" if s.param_bytes == 4 * s.total_params else "as stored"
    rows = [
        ["parameters", format_count(s.total_params), f"trainable {format_count(s.trainable_params)}"],
        ["multiply-adds", format_macs(s.macs), f"{format_count(s.macs)}, inference forward {per}"],
    ]
    if s.inference_params != s.total_params:
        rows.insert(1, ["inference parameters", format_count(s.inference_params),
                        "used by the eval-mode forward"])
    if s.train_forward_macs is not None and s.train_forward_macs != s.macs:
        rows.append(["training forward MACs", format_macs(s.train_forward_macs),
                     "with the train-only layers"])
    rows += [
        ["parameter memory", format_mib(s.param_bytes), dtypes],
        ["activation memory", format_mib(s.activation_bytes),
         "eval forward: every distinct tensor the layers output"],
        ["saved for backward", "n/a" if s.saved_for_backward_bytes is None
         else format_mib(s.saved_for_backward_bytes),
         "train forward: tensors autograd keeps, parameters excluded"],
    ]
    return render_table(["total", "value", "detail"], rows, ["l", "r", "l"])
