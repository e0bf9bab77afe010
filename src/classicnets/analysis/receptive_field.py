"""Receptive fields and effective strides, followed through the operations a forward pass runs.

The receptive field of an output is the square of input pixels it depends on; the jump
(effective stride) is the distance in input pixels between neighbouring outputs. A window
of kernel ``k``, stride ``s`` and dilation ``d`` turns ``(rf, jump)`` into
``(rf + d(k - 1) * jump, jump * s)``; padding moves the field but does not widen it.

Nothing is read from the model's structure: :class:`FieldTracker`, a
:class:`~torch.overrides.TorchFunctionMode`, sees every torch function the forward pass
calls (convolutions and pools inside modules, and also ``torch.cat``, additions, views)
and gives each tensor it returns the field of the widest tensor that went in. So a
concatenation of branches, or a residual sum, has the field of its widest input; the jump
is the same for all of them in the networks this covers, and otherwise the largest is kept.

* 2-D convolutions, max and average pools widen the field by their window.
* An adaptive pool is the fixed pool it amounts to: the identity where it keeps the map's
  size (VGG's 7x7 pool at 224 px), kernel = stride = in / out where that divides, and
  otherwise its widest window and largest step (an upper bound). Pooling to 1x1 is global.
* Global operations (a linear layer on flat features, a global pool, a mean or sum over
  both spatial axes) make every output depend on the whole input: the field is "all".
* Every other operation (activations, batch norm, LRN, dropout, concatenation, additions,
  reshapes) passes the widest field of its inputs through unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

Pair = tuple[int, int]


@dataclass(frozen=True)
class ReceptiveField:
    size: Pair | None  # (height, width) in input pixels; None: the whole input
    jump: Pair | None  # input pixels between neighbouring outputs; None with the whole input

    @property
    def whole(self) -> bool:
        return self.size is None


PIXEL = ReceptiveField(size=(1, 1), jump=(1, 1))  # the input image: each value sees itself
WHOLE = ReceptiveField(size=None, jump=None)


@dataclass(frozen=True)
class Window:
    kernel: Pair
    stride: Pair
    dilation: Pair = (1, 1)


def after_window(field: ReceptiveField, window: Window) -> ReceptiveField:
    if field.whole:
        return field
    size = tuple(rf + d * (k - 1) * j for rf, k, d, j in zip(field.size, window.kernel, window.dilation, field.jump))
    jump = tuple(j * s for j, s in zip(field.jump, window.stride))
    return ReceptiveField(size=size, jump=jump)


def widest(fields: Sequence[ReceptiveField]) -> ReceptiveField:
    """The field of a result computed from several tensors (concatenation, sum)."""
    if any(f.whole for f in fields):
        return WHOLE
    return ReceptiveField(size=tuple(max(axis) for axis in zip(*(f.size for f in fields))),
                          jump=tuple(max(axis) for axis in zip(*(f.jump for f in fields))))


def format_field(field: ReceptiveField | None) -> tuple[str, str]:
    """(receptive field, jump) as table cells: '212', '7x5', 'all'; '-' where there is none."""
    if field is None:
        return "-", "-"
    if field.whole:
        return "all", "-"
    return _side(field.size), _side(field.jump)


def _side(pair: Pair) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _pair(value: int | Sequence[int]) -> Pair:
    return (value, value) if isinstance(value, int) else (value[0], value[-1])


# Argument readers: each has the signature of the torch function it reads, so Python binds
# the positional and keyword arguments exactly as the function itself does.

def _conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Window:
    return Window(kernel=tuple(weight.shape[-2:]), stride=_pair(stride), dilation=_pair(dilation))


def _max_pool(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
              return_indices=False) -> Window:
    return Window(kernel=_pair(kernel_size), stride=_pair(stride or kernel_size), dilation=_pair(dilation))


def _avg_pool(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
              divisor_override=None) -> Window:
    return Window(kernel=_pair(kernel_size), stride=_pair(stride or kernel_size))


def _adaptive_pool(input, output_size, return_indices=False) -> Window | None:
    """The fixed pool an adaptive one amounts to on this input; None where it is global."""
    sizes = tuple(input.shape[-2:])
    wanted = tuple(size if out is None else out for size, out in zip(sizes, _pair(output_size)))
    if wanted == (1, 1):
        return None
    kernels, steps = zip(*(_adaptive_axis(size, out) for size, out in zip(sizes, wanted)))
    return Window(kernel=kernels, stride=steps)


def _adaptive_axis(size: int, out: int) -> tuple[int, int]:
    # PyTorch's windows: output i pools input [floor(i * size / out), ceil((i + 1) * size / out)).
    starts = [i * size // out for i in range(out)]
    ends = [math.ceil((i + 1) * size / out) for i in range(out)]
    widest_window = max(end - start for start, end in zip(starts, ends))
    largest_step = max((b - a for a, b in zip(starts, starts[1:])), default=1)
    return widest_window, max(largest_step, 1)


def _linear(input, weight, bias=None) -> Window | None:
    # On flat features a linear layer mixes everything; on a map (channels last) it is a 1x1.
    return None if input.dim() <= 2 else Window(kernel=(1, 1), stride=(1, 1))


def _reduction(input, dim=None, *args, **kwargs) -> Window | None:
    everything = dim is None or (isinstance(dim, (tuple, list)) and not dim)  # amax's dim=() is all
    dims = range(input.dim()) if everything else [dim] if isinstance(dim, int) else dim
    spatial = {input.dim() - 2, input.dim() - 1}
    covered = {d % input.dim() for d in dims}
    return None if spatial <= covered else Window(kernel=(1, 1), stride=(1, 1))


# torch function -> reader of the window it applies (None from a reader: global).
_WINDOWS: dict[Callable, Callable[..., Window | None]] = {
    torch.conv2d: _conv,  # F.conv2d is torch.conv2d
    F.max_pool2d: _max_pool,
    F.max_pool2d_with_indices: _max_pool,
    F.avg_pool2d: _avg_pool,
    F.adaptive_avg_pool2d: _adaptive_pool,
    F.adaptive_max_pool2d: _adaptive_pool,
    F.adaptive_max_pool2d_with_indices: _adaptive_pool,
    F.linear: _linear,
    **{reduce: _reduction for reduce in (torch.mean, torch.Tensor.mean, torch.sum, torch.Tensor.sum,
                                         torch.amax, torch.Tensor.amax)},
}


def _tensors(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


class FieldTracker(TorchFunctionMode):
    """While active, gives every tensor computed from ``image`` its receptive field.

    Fields are keyed on the tensor objects themselves, weakly, so a tensor that is freed
    takes its entry with it and a new tensor at the same address never inherits it (data
    pointers would not do: views and in-place results share them, and on the meta device
    they are all 0). An in-place operation returns its input and overwrites its field.
    """

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self._fields = WeakIdKeyDictionary()
        self._fields[image] = PIXEL

    def field_of(self, tensor: torch.Tensor) -> ReceptiveField | None:
        return self._fields.get(tensor)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)  # this mode is off inside func: only the outermost call is seen
        inputs = [field for t in _tensors((args, kwargs)) if (field := self._fields.get(t)) is not None]
        if inputs:
            field = widest(inputs)
            reader = _WINDOWS.get(func)
            if reader is not None:
                window = reader(*args, **kwargs)
                field = WHOLE if window is None else after_window(field, window)
            for tensor in _tensors(result):
                self._fields[tensor] = field
        return result
