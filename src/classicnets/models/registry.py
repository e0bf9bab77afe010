"""A small model registry in the style of timm: ``create_model`` and ``list_models``."""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
from torch import nn

from ..errors import UnknownModelError, UserError
from ..limits import MAX_CLASSES, MAX_IN_CHANS


class KeyRename(Protocol):
    """A state-dict key translation between torchvision's names and ours."""

    def to_ours(self, key: str) -> str: ...

    def to_torchvision(self, key: str) -> str: ...


@dataclass(frozen=True)
class ModelEntry:
    """What the rest of the package needs to know about a network besides the network
    itself (which answers the rest: see :mod:`~classicnets.models.protocol`)."""

    name: str
    family: str  # "vgg", "googlenet", "resnet", ...: the table column, never branched on
    paper_config: str  # how the paper (or torchvision) names this network
    builder: Callable[..., nn.Module]
    paper: str = ""  # "Authors, year, title"
    year: int | None = None
    native_input_size: int = 224  # the input side of the paper (or of torchvision's weights)
    min_input_size: int = 1  # the smallest square side the eval-mode forward runs at
    max_input_size: int | None = None  # the largest, for a network that takes one size only
    # torchvision's weight enum entry ("ResNet18_Weights.IMAGENET1K_V1"), where it has weights.
    torchvision_weights: str | None = None
    # How torchvision's state-dict keys become ours and back; None: the names are the same.
    torchvision_names: KeyRename | None = None
    # The weights expect torchvision's input re-normalisation (our ``transform_input``) on RGB.
    torchvision_transform_input: bool = False
    # Why a near match of a network with torchvision weights cannot take them (one sentence).
    torchvision_refusal: str | None = None

    def input_sizes(self) -> str:
        """The square sides the network runs at, in words."""
        if self.max_input_size is not None and self.max_input_size == self.min_input_size:
            return f"it takes {self.min_input_size} px images only"
        if self.max_input_size is not None:
            return f"it takes {self.min_input_size} to {self.max_input_size} px"
        return f"the smallest input it takes is {self.min_input_size} px"

    def size_fits(self, side: int) -> bool:
        return side >= self.min_input_size and (self.max_input_size is None or side <= self.max_input_size)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, family: str, paper_config: str, builder: Callable[..., nn.Module],
                   **details: Any) -> ModelEntry:
    """Add a network under ``name``; ``details`` are the other :class:`ModelEntry` fields.

    The builder takes ``num_classes``, ``in_chans`` and ``init_weights`` (plus its own
    settings) and returns a module speaking :mod:`~classicnets.models.protocol`.
    """
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    entry = ModelEntry(name, family, paper_config, builder, **details)
    if entry.min_input_size < 1 or (entry.max_input_size is not None and entry.max_input_size < entry.min_input_size):
        raise ValueError(f"model {name!r}: bad input sizes {entry.min_input_size}..{entry.max_input_size}")
    _REGISTRY[name] = entry
    return entry


def unregister_model(name: str) -> None:
    """Remove a registered network (a test's throwaway family, say)."""
    get_model_entry(name)
    del _REGISTRY[name]


def registered_entries() -> list[ModelEntry]:
    """Every entry, in registration order."""
    return list(_REGISTRY.values())


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted; ``pattern`` is a shell-style filter such as ``"vgg*_bn"``."""
    names = sorted(_REGISTRY)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def get_model_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=4, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())}."
        )
    return _REGISTRY[name]


def create_model(
    name: str,
    num_classes: int = 1000,
    in_chans: int = 3,
    pretrained: str | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered model.

    ``pretrained="torchvision"`` loads torchvision's ImageNet weights (downloaded on
    first use) into our implementation; only the networks torchvision ships qualify.
    """
    entry = get_model_entry(name)
    check_count("num_classes", num_classes, MAX_CLASSES)
    check_count("in_chans", in_chans, MAX_IN_CHANS)
    if pretrained is None:
        return entry.builder(num_classes=num_classes, in_chans=in_chans, **kwargs)
    if pretrained not in _PRETRAINED_SOURCES:
        known = " or ".join(repr(source) for source in sorted(_PRETRAINED_SOURCES))
        raise UserError(f"unknown pretrained source {pretrained!r}; the only one is {known}.")
    return _PRETRAINED_SOURCES[pretrained](entry, num_classes=num_classes, in_chans=in_chans, **kwargs)


# Where ready-made weights come from, by name: porting.py (the bridge to torchvision) adds
# "torchvision" when the package loads, so this module never imports it back.
_PRETRAINED_SOURCES: dict[str, Callable[..., nn.Module]] = {}


def register_pretrained_source(name: str, build: Callable[..., nn.Module]) -> None:
    """``build(entry, num_classes=, in_chans=, **kwargs)`` makes ``create_model(name, pretrained=name)``."""
    _PRETRAINED_SOURCES[name] = build


def check_count(name: str, value: Any, limit: int) -> None:
    """A class or channel count, perhaps read from a file: a whole number in [1, limit]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{name} must be a whole number, got {value!r}.")
    if not 1 <= value <= limit:
        raise UserError(f"{name} must be between 1 and {limit:,}, got {value}.")


def run_or_refuse_input(model: nn.Module, x: torch.Tensor, name: str, what: str, hint: str = "") -> Any:
    """``model(x)``, where a failure can only come from the input's size (the same network runs
    at 224 px): feature maps pooled down to nothing, or batch norm in training mode seeing one
    value per channel. It becomes a :class:`UserError` naming ``what`` was given, plus ``hint``.

    A registered ``name`` is first asked for the sizes it declares, so an input outside them
    is refused before running, in a sentence that names the sizes that work (and, where
    ``hint`` names an option such as ``--image-size``, the value to give it)."""
    entry = _REGISTRY.get(name)
    if entry is not None and x.dim() == 4:
        small, large = min(x.shape[-2:]), max(x.shape[-2:])
        if not (entry.size_fits(small) and entry.size_fits(large)):
            too = "small" if small < entry.min_input_size else "large"
            raise UserError(f"{name} cannot run on {what}, too {too} for it ({entry.input_sizes()})"
                            f"{_size_hint(hint, entry)}.")
    try:
        return model(x)
    except torch.OutOfMemoryError:
        raise  # a device running out of memory is not about the input's size
    except (RuntimeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0].rstrip(".")
        raise UserError(f"{name} cannot run on {what}, too small for it ({reason}){hint}.") from error


def _size_hint(hint: str, entry: ModelEntry) -> str:
    option = re.search(r"--[a-z][a-z-]*", hint)
    if option is None:
        return hint
    if entry.max_input_size == entry.min_input_size:
        return f"; use {option.group()} {entry.min_input_size}"
    if entry.max_input_size is None:
        return f"; use {option.group()} {entry.min_input_size} or more"
    return f"; use {option.group()} from {entry.min_input_size} to {entry.max_input_size}"
