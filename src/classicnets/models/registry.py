"""A small model registry in the style of timm: ``create_model`` and ``list_models``."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..errors import UnknownModelError, UserError
from ..limits import MAX_CLASSES, MAX_IN_CHANS


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str  # "vgg" or "googlenet"
    paper_config: str  # how the paper (or torchvision) names this network
    builder: Callable[..., nn.Module]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, family: str, paper_config: str, builder: Callable[..., nn.Module]) -> None:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = ModelEntry(name, family, paper_config, builder)


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
    if pretrained not in (None, "torchvision"):
        raise UserError(f"unknown pretrained source {pretrained!r}; the only one is 'torchvision'.")
    if pretrained == "torchvision":
        from .porting import build_pretrained  # imports torchvision.models only when asked

        return build_pretrained(entry, num_classes=num_classes, in_chans=in_chans, **kwargs)
    return entry.builder(num_classes=num_classes, in_chans=in_chans, **kwargs)


def check_count(name: str, value: Any, limit: int) -> None:
    """A class or channel count, perhaps read from a file: a whole number in [1, limit]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{name} must be a whole number, got {value!r}.")
    if not 1 <= value <= limit:
        raise UserError(f"{name} must be between 1 and {limit:,}, got {value}.")


def run_or_refuse_input(model: nn.Module, x: torch.Tensor, name: str, what: str, hint: str = "") -> Any:
    """``model(x)``, where a failure can only come from the input's size (the same network runs
    at 224 px): feature maps pooled down to nothing, or batch norm in training mode seeing one
    value per channel. It becomes a :class:`UserError` naming ``what`` was given, plus ``hint``."""
    try:
        return model(x)
    except torch.OutOfMemoryError:
        raise  # a device running out of memory is not about the input's size
    except (RuntimeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0].rstrip(".")
        raise UserError(f"{name} cannot run on {what}, too small for it ({reason}){hint}.") from error
