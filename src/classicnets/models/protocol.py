"""The model protocol: what a network tells the rest of the package about itself.

Adding a family touches ``models/`` only: the code outside asks the questions below and
never looks at a family name or a model class. Each registered network answers them in
two places.

The registry entry (:class:`~classicnets.models.registry.ModelEntry`): ``family``,
``paper_config``, ``paper`` and ``year``, ``native_input_size`` (the paper's input side),
``min_input_size`` / ``max_input_size`` (the square sides its eval-mode forward runs at;
smaller or larger inputs are refused in one sentence naming them), and
``torchvision_weights`` (the weight enum, e.g. ``"ResNet18_Weights.IMAGENET1K_V1"``) with
``torchvision_names`` (a key rename, where ours differ), ``torchvision_transform_input``
(the weights expect torchvision's input re-normalisation) and ``torchvision_refusal`` (why a
near match cannot take them).

The model itself, required (:func:`missing_protocol`):

``stem``
    property: the first convolution, the one that sees the input channels (adapted by
    ``--init-from`` and ``--pretrained`` to another channel count).
``head``
    property: the last layer; in eval mode ``head(penultimate_features(x))`` are the logits.
    Its first dimension is the class count (replaced for another one).
``aux_outputs``
    property: ``{name: loss weight}`` of the auxiliary classifiers its training-mode forward
    returns, as the fields after ``logits`` of a NamedTuple; ``{}`` when none run.
``blocks()``
    ``[(name, module)]`` in forward order; each module's output is that block's output
    (Grad-CAM picks among them; ``activations`` and ``summary`` group by them).
``forward_features(x)``, ``forward_head(features)``, ``penultimate_features(x)``
    the body, the classifier, and what the last layer reads (``embed``).

Members are looked up on the class (properties and methods), so a plain module that
merely has a ``head`` attribute is not taken for a network of this package.

The builder takes ``num_classes``, ``in_chans`` and ``init_weights``; one whose network
has auxiliary heads also takes ``aux_logits`` (porting sets it from the state dict).

The model, optional (the defaults here serve most networks):

``aux_heads()``
    ``{aux output name: module}``; default ``{}``.
``head_modules()``
    the modules that read the features: what ``--freeze features`` leaves trainable and
    ``--backbone-lr`` leaves at the full rate; default the top-level modules holding
    ``head`` and the auxiliary heads.
``block_parts()``
    ``{block: [module names]}`` whose outputs ``activations`` draws; default each block's
    own module (blocks without a feature map at the image's size are left out).
``summary_blocks()``
    ``[(block, (module names))]`` grouping ``summary``'s rows; default: each block holds
    the modules whose output comes after the previous block's and up to its own (in the
    forward pass ``summary`` traces; in registration order without one), the auxiliary
    heads are blocks of their own, and what follows the last block is ``head``.
``dense_head()``
    :class:`FullyConnectedHead` (FC layers that dense evaluation turns into
    convolutions), :class:`GlobalPoolHead` (global pooling then one linear layer: dense
    already) or ``None`` (default: dense evaluation does not apply).
"""

from __future__ import annotations

import copy
import functools
import operator
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import UserError

REQUIRED = ("stem", "head", "aux_outputs", "blocks", "forward_features", "forward_head", "penultimate_features")
HEAD_BLOCK = "head"  # the summary block of what runs after the last block


@dataclass(frozen=True)
class FullyConnectedHead:
    """FC layers read a fixed window of the feature map (VGG, AlexNet): ``body`` computes
    ``forward_features``, ``pool`` averages its map to the window adaptively, and
    ``layers`` (linear, ReLU, dropout) read that window flattened as (channel, row, column)."""

    body: nn.Module
    pool: nn.AdaptiveAvgPool2d
    layers: nn.Sequential

    @property
    def window(self) -> int:
        size = self.pool.output_size
        sides = (size, size) if isinstance(size, int) else tuple(size)
        if len(set(sides)) != 1 or sides[0] is None:
            raise ValueError(f"dense evaluation needs a square pooling window, got {size}")
        return sides[0]


@dataclass(frozen=True)
class GlobalPoolHead:
    """Global average pooling, then (dropout and) one linear layer: dense already, since
    the linear layer commutes with the average (GoogLeNet, ResNet, Inception v3)."""

    linear: nn.Linear
    dropout: nn.Module | None = None


class FeaturesClassifierNet(nn.Module):
    """The protocol answers shared by networks built as ``features`` (convolutions and pools,
    input first) then ``classifier`` (FC layers, logits last) without auxiliary heads: VGG
    and AlexNet."""

    features: nn.Sequential
    classifier: nn.Sequential

    @property
    def stem(self) -> nn.Conv2d:
        return self.features[0]

    @property
    def head(self) -> nn.Linear:
        return self.classifier[-1]

    @property
    def aux_outputs(self) -> dict[str, float]:
        return {}


def missing_protocol(model: nn.Module) -> list[str]:
    """The required protocol members ``model`` lacks (empty for a network of this package)."""
    return [name for name in REQUIRED if not hasattr(type(model), name)]


def is_protocol_model(model: Any) -> bool:
    return isinstance(model, nn.Module) and not missing_protocol(model)


def require_protocol(model: nn.Module, what: str) -> None:
    """UserError unless ``model`` speaks the protocol: ``what`` names the command or step."""
    missing = missing_protocol(model)
    if missing:
        raise UserError(f"{what} needs a network that declares its stem, head and blocks (see "
                        f"classicnets.models.protocol), and a {type(model).__name__} lacks {', '.join(missing)}.")


def module_name(model: nn.Module, module: nn.Module) -> str:
    """The qualified name of ``module`` inside ``model`` ("" for the model itself)."""
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    raise ValueError(f"{type(module).__name__} is not a submodule of {type(model).__name__}")


# ----------------------------------------------------------------------------- stem and head

def stem_name(model: nn.Module) -> str:
    """Qualified name of the first convolution (its ``.weight`` is adapted to other channel counts)."""
    return module_name(model, model.stem)


def head_name(model: nn.Module) -> str:
    return module_name(model, model.head)


def aux_heads(model: nn.Module) -> dict[str, nn.Module]:
    """{auxiliary output name: module computing it}, for the auxiliary classifiers present."""
    heads = model.aux_heads() if hasattr(model, "aux_heads") else {}
    return {name: module for name, module in heads.items() if module is not None}


def head_modules(model: nn.Module) -> list[nn.Module]:
    """The modules that read the features (classifier and auxiliary heads)."""
    if hasattr(model, "head_modules"):
        return list(model.head_modules())
    children = dict(model.named_children())
    chosen: list[nn.Module] = []
    for module in [model.head, *aux_heads(model).values()]:
        top = children[module_name(model, module).split(".")[0]]
        if all(top is not c for c in chosen):
            chosen.append(top)
    return chosen


def head_module_names(model: nn.Module) -> list[str]:
    return [module_name(model, module) for module in head_modules(model)]


def class_layer_names(model: nn.Module) -> list[str]:
    """The layers whose first dimension is the class count: ``head`` and the last linear
    layer of each auxiliary head."""
    names = [head_name(model)]
    for head in aux_heads(model).values():
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        names.append(module_name(model, linears[-1] if linears else head))
    return names


def aux_loss_weights(model: nn.Module, weight: float | None = None) -> dict[str, float]:
    """{auxiliary output: loss weight}: the model's own (``aux_outputs``), or ``weight`` for
    each when it is given; empty for a model without auxiliary outputs."""
    own = dict(getattr(model, "aux_outputs", {}) or {})
    return own if weight is None else {name: float(weight) for name in own}


def is_aux_output(outputs: Any) -> bool:
    """A training-mode output with auxiliary classifiers: a NamedTuple whose first field is ``logits``."""
    fields = getattr(outputs, "_fields", ())
    return isinstance(outputs, tuple) and len(fields) > 1 and fields[0] == "logits"


def weighted_aux_loss(outputs: tuple, labels: torch.Tensor, criterion: nn.Module,
                      weights: Mapping[str, float]) -> torch.Tensor:
    """The main loss plus each auxiliary loss times its weight. Outputs sharing a weight
    are summed before the multiplication (GoogLeNet: ``main + 0.3 * (aux1 + aux2)``)."""
    loss = criterion(outputs.logits, labels)
    missing = [name for name in outputs._fields[1:] if name not in weights]
    if missing:
        raise ValueError(f"no loss weight for the auxiliary output(s) {', '.join(missing)}")
    by_weight: dict[float, list[torch.Tensor]] = {}
    for name in outputs._fields[1:]:
        by_weight.setdefault(weights[name], []).append(criterion(getattr(outputs, name), labels))
    for weight, losses in by_weight.items():
        loss = loss + weight * functools.reduce(operator.add, losses)
    return loss


# ----------------------------------------------------------------------------- blocks

def named_blocks(model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """(block name, qualified module name, module) of each block, in forward order."""
    return [(name, module_name(model, module), module) for name, module in model.blocks()]


def block_parts(model: nn.Module) -> dict[str, list[str]]:
    """{block: qualified names of the modules drawn for it} (see the module docstring)."""
    if hasattr(model, "block_parts"):
        return {block: list(parts) for block, parts in model.block_parts().items() if parts}
    return {name: [qualified] for name, qualified, _ in named_blocks(model)}


def summary_blocks(model: nn.Module, order: Mapping[str, int] | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """(block, qualified names of its modules) for ``summary`` (see the module docstring).

    ``order`` is the position at which each module's output appeared in a forward pass
    (qualified name -> position; a module that did not run is missing). Without it the
    registration order stands in for the forward order.
    """
    if hasattr(model, "summary_blocks"):
        return [(block, tuple(members)) for block, members in model.summary_blocks()]
    modules = list(model.named_modules())  # pre-order: a module, then everything inside it
    index = {qualified: i for i, (qualified, _) in enumerate(modules)}
    end = dict(index)  # where each module's subtree ends, in pre-order
    for qualified, _ in reversed(modules):
        parent = qualified.rpartition(".")[0]
        if qualified and parent in end:
            end[parent] = max(end[parent], end[qualified])
    if order is None:
        place, block_ends = index.get, [(name, end[qualified]) for name, qualified, _ in named_blocks(model)]
    else:
        place, block_ends = order.get, [(name, order.get(qualified)) for name, qualified, _ in named_blocks(model)]
    aux = {module_name(model, module): name for name, module in aux_heads(model).items()}

    def group_of(qualified: str) -> str:
        for prefix, name in aux.items():
            if qualified == prefix or qualified.startswith(prefix + "."):
                return name
        position = place(qualified)
        if position is None:  # it did not run: nothing to attribute to a block
            return HEAD_BLOCK
        return next((name for name, last in block_ends if last is not None and position <= last), HEAD_BLOCK)

    # Every module that is a row of its own (a leaf, or one owning parameters) gets a block;
    # a module is listed when everything inside it is in one block and its parent is not.
    subtree_groups: dict[str, set[str]] = {}
    for qualified, module in modules:
        if qualified and (not list(module.children()) or any(True for _ in module.parameters(recurse=False))):
            group = group_of(qualified)
            parts = qualified.split(".")
            for depth in range(1, len(parts) + 1):
                subtree_groups.setdefault(".".join(parts[:depth]), set()).add(group)
    groups: dict[str, list[str]] = {}
    for qualified, _ in modules:
        own = subtree_groups.get(qualified, set())
        parent = qualified.rpartition(".")[0]
        if qualified and len(own) == 1 and not (parent and len(subtree_groups.get(parent, ())) == 1):
            groups.setdefault(next(iter(own)), []).append(qualified)
    return [(block, tuple(members)) for block, members in groups.items()]


def dense_head(model: nn.Module) -> FullyConnectedHead | GlobalPoolHead | None:
    return model.dense_head() if hasattr(model, "dense_head") else None


def penultimate_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return model.penultimate_features(images)


# ----------------------------------------------------------------------------- shapes

def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the meta device: same structure and settings, no memory, so
    a forward pass costs nothing and only tells shapes."""
    memo: dict[int, Any] = {}
    for parameter in model.parameters():
        memo[id(parameter)] = nn.Parameter(torch.empty_like(parameter, device="meta"),
                                           requires_grad=parameter.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    return copy.deepcopy(model, memo)


def feature_map_side(model: nn.Module, image_size: int, in_chans: int | None = None) -> int:
    """The shorter side of ``forward_features``' map for a square input (on a meta copy)."""
    probe = meta_copy(model).eval()
    channels = in_chans or model.stem.in_channels
    with torch.no_grad():
        features = probe.forward_features(torch.empty(1, channels, image_size, image_size, device="meta"))
    return min(features.shape[-2:]) if features.dim() == 4 else 1
