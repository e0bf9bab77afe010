"""Start a network from another run's weights: fine-tuning and channel transfer.

:func:`init_from` copies every tensor whose name and shape match. Two mismatches are
expected and handled:

* the class count differs (Fashion-MNIST's 10 -> Dogs-vs-Cats' 2): the final linear
  layer of every head keeps the model's fresh initialisation;
* the input channels differ (a 1-channel Fashion-MNIST stem -> 3-channel photos, or
  back): the first convolution is adapted so that a grey image gives the same
  response. 1 -> C replicates the kernel over the C channels and scales it by 1/C (a
  grey image repeated C times then sums to the original response); C -> 1 sums the
  kernel over its channels (the same identity read backwards).

Any other shape mismatch means a different architecture and is refused. The returned
:class:`TransferReport` names every tensor and what happened to it.

:func:`freeze_features` and :func:`param_groups` split a network into its body and its
head (the modules it declares read its features: VGG's ``classifier``; GoogLeNet's ``fc``
and auxiliary heads; see :mod:`~classicnets.models.protocol`) to train only the head or
to give it its own learning rate.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..models import protocol


@dataclass
class TransferReport:
    """What :func:`init_from` did to every tensor of the target model."""

    source: str
    source_model: str | None  # as recorded in the run's metadata, if any
    loaded: list[str] = field(default_factory=list)  # copied unchanged
    adapted: dict[str, str] = field(default_factory=dict)  # name -> how
    initialised: dict[str, str] = field(default_factory=dict)  # name -> why it kept its fresh values
    unused: list[str] = field(default_factory=list)  # source tensors the model has no place for

    def __str__(self) -> str:
        origin = f" ({self.source_model})" if self.source_model else ""
        lines = [f"initialised from {self.source}{origin}",
                 f"  loaded       {len(self.loaded)} tensors"]
        lines += _section("adapted", self.adapted)
        lines += _section("new", self.initialised)
        if self.unused:
            lines.append(f"  unused       {len(self.unused)}: {', '.join(self.unused)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "source_model": self.source_model, "loaded": self.loaded,
                "adapted": self.adapted, "initialised": self.initialised, "unused": self.unused}


def _section(title: str, entries: dict[str, str]) -> list[str]:
    if not entries:
        return [f"  {title:<12} 0"]
    by_reason: dict[str, list[str]] = {}
    for name, why in entries.items():
        by_reason.setdefault(why, []).append(name)
    lines = [f"  {title:<12} {len(entries)}:"]
    lines += [f"    {', '.join(names)}: {why}" for why, names in by_reason.items()]
    return lines


# ----------------------------------------------------------------------------- head and body

def head_module_names(model: nn.Module) -> list[str]:
    """The modules that form the classifier head, as the model declares them."""
    protocol.require_protocol(model, "telling the head from the body")
    return protocol.head_module_names(model)


def _is_head(name: str, heads: list[str]) -> bool:
    return any(name == h or name.startswith(h + ".") for h in heads)


def class_layers(model: nn.Module) -> list[str]:
    """The layers whose size is the class count: the model's ``head`` and the last layer of
    each auxiliary head."""
    protocol.require_protocol(model, "finding the class layers")
    return protocol.class_layer_names(model)


def stem_conv(model: nn.Module) -> str:
    """Name of the first convolution, the one that sees the input channels."""
    protocol.require_protocol(model, "finding the first convolution")
    return protocol.stem_name(model)


# ----------------------------------------------------------------------------- loading

def source_weights_path(source: str | os.PathLike) -> Path:
    """The weights file of a run directory (its best.safetensors), or ``source`` itself."""
    from .checkpoint import BEST_WEIGHTS

    path = Path(source)
    if path.is_dir():
        path = path / BEST_WEIGHTS
    if not path.is_file():
        raise UserError(f"no weights at {path}; give a run directory or a .safetensors file.")
    return path


def read_source(source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], Path, str | None]:
    """Tensors of a run directory (its best.safetensors) or of a .safetensors file."""
    from .checkpoint import read_safetensors

    path = source_weights_path(source)
    tensors, metadata = read_safetensors(path)  # any safetensors file: a port's or another tool's too
    return tensors, path, metadata.get("model")


def inherited_model_kwargs(source: str | os.PathLike, model_name: str, in_chans: int) -> dict[str, Any]:
    """Settings that the weights of ``source`` need from the network they go into.

    torchvision's GoogLeNet weights expect ``transform_input`` (their own input scaling). A
    port file or a run started from them records it; a run of the same network on RGB
    images that starts from them keeps it, as ``--pretrained torchvision`` would set it.
    """
    from .checkpoint import read_safetensors

    _, metadata = read_safetensors(source_weights_path(source), tensors=False)
    if metadata.get("model") != model_name or in_chans != 3:
        return {}
    try:
        saved = json.loads(metadata.get("model_kwargs", "{}"))
    except ValueError:
        return {}
    return {"transform_input": True} if isinstance(saved, dict) and saved.get("transform_input") else {}


def init_from(model: nn.Module, source: str | os.PathLike) -> TransferReport:
    """Load every matching tensor of ``source`` into ``model`` (in place); see the module docstring."""
    tensors, path, source_model = read_source(source)
    report = TransferReport(str(path), source_model)
    stem_weight = f"{stem_conv(model)}.weight"
    class_prefixes = tuple(f"{name}." for name in class_layers(model))
    state = model.state_dict()
    refused = []
    for name, target in state.items():
        given = tensors.get(name)
        if given is None:
            report.initialised[name] = "not in the source"
        elif given.shape == target.shape:
            state[name] = given.to(target.dtype)
            report.loaded.append(name)
        elif name == stem_weight and _channel_adaptable(given, target):
            state[name] = adapt_input_channels(given, target.shape[1]).to(target.dtype)
            report.adapted[name] = _channel_words(given.shape[1], target.shape[1])
        elif name.startswith(class_prefixes) and given.shape[1:] == target.shape[1:]:
            report.initialised[name] = f"class count differs (source {given.shape[0]}, model {target.shape[0]})"
        else:
            refused.append(f"{name} {tuple(given.shape)} vs {tuple(target.shape)}")
    if refused:
        shown = "; ".join(refused[:4]) + ("; ..." if len(refused) > 4 else "")
        raise UserError(f"the weights in {path} do not fit this model ({len(refused)} tensor(s) differ in shape: "
                        f"{shown}); transfer needs the same architecture.")
    if not report.loaded and not report.adapted:
        raise UserError(f"no tensor of {path} matches this model by name; is it a run of the same architecture?")
    report.unused = sorted(set(tensors) - set(state))
    model.load_state_dict(state, strict=True)
    return report


def _channel_adaptable(given: torch.Tensor, target: torch.Tensor) -> bool:
    same_otherwise = given.dim() == 4 and given.shape[0] == target.shape[0] and given.shape[2:] == target.shape[2:]
    return same_otherwise and (given.shape[1] == 1 or target.shape[1] == 1)


def adapt_input_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """A conv kernel ``[O, I, k, k]`` for ``channels`` inputs that answers grey input the same.

    1 -> C: repeat and divide by C; C -> 1: sum over the input channels.
    """
    if weight.shape[1] == channels:
        return weight.clone()
    if weight.shape[1] == 1:
        return weight.repeat(1, channels, 1, 1) / channels
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    raise ValueError(f"cannot adapt {weight.shape[1]} input channels to {channels}")


def _channel_words(source: int, target: int) -> str:
    if source == 1:
        return f"input channels 1 -> {target}: kernel replicated and scaled by 1/{target}"
    return f"input channels {source} -> 1: kernel summed over its channels"


# ----------------------------------------------------------------------------- fine-tuning

def freeze_features(model: nn.Module) -> int:
    """Stop gradients for everything but the head; returns how many parameters were frozen.

    Batch-norm layers in the body still update their running statistics in train mode;
    call ``.eval()`` on the body too for a strictly fixed feature extractor.
    """
    heads = head_module_names(model)
    frozen = 0
    for name, parameter in model.named_parameters():
        if not _is_head(name, heads):
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen


def param_groups(model: nn.Module, backbone_lr: float, head_lr: float,
                 weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """Optimizer groups with separate learning rates for the body and the head.

    Weight decay goes to weight matrices and kernels only (as the engine does); frozen
    parameters are left out, and so is a group with nothing to train. Every group also
    carries ``lr_scale`` (its lr over ``head_lr``) for schedules that set one lr for all
    groups: they should set ``group["lr"] = lr * group["lr_scale"]``.
    """
    if not (backbone_lr >= 0 and head_lr > 0):
        raise UserError(f"learning rates must be positive (the body's may be 0), got {backbone_lr} and {head_lr}.")
    heads = head_module_names(model) if backbone_lr != head_lr else []  # one lr: no need to find the head
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            key = ("head" if _is_head(name, heads) else "backbone", parameter.ndim >= 2)
            buckets.setdefault(key, []).append(parameter)
    groups = []
    for part, lr in (("backbone", backbone_lr), ("head", head_lr)):
        for decays in (True, False):
            params = buckets.get((part, decays), [])
            if params:
                groups.append({"params": params, "lr": lr, "lr_scale": lr / head_lr, "name": part,
                               "weight_decay": weight_decay if decays else 0.0})
    return groups
