"""Starting a deep network from a shallower trained one, as the papers did.

``vgg-staged`` (VGG paper, section 3.1): "we began with training the configuration A,
shallow enough to be trained with random initialisation. Then, when training deeper
architectures, we initialised the first four convolutional layers and the last three
fully-connected layers with the layers of net A (the intermediate layers were initialised
randomly)." A's first four convolutions are conv1_1, conv2_1, conv3_1 and conv3_2; each goes
to the deeper net's convolution at the same place, stage and index within the stage (D's
conv1_1, conv2_1, conv3_1, conv3_2), whose shape is the same; module names differ (A's
conv2_1 is ``features.3``, D's ``features.5``), so the pairs are found by position, never by
name. The three fully-connected layers go to their counterparts. Batch-norm layers after a
copied convolution come along.
"""

from __future__ import annotations

from torch import nn

from ..errors import UserError
from .vgg import VGG

INIT_MODES = ("vgg-staged",)
STAGED_CONVS = 4  # the paper's "first four convolutional layers"


def conv_positions(features: nn.Sequential) -> list[tuple[int, int, int]]:
    """(stage, index within the stage, module index) of every convolution, stages split by pools."""
    positions, stage, within = [], 0, 0
    for index, layer in enumerate(features):
        if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            stage, within = stage + 1, 0
        elif isinstance(layer, nn.Conv2d):
            positions.append((stage, within, index))
            within += 1
    return positions


def following_norm(features: nn.Sequential, index: int) -> int | None:
    after = index + 1
    return after if after < len(features) and isinstance(features[after], nn.BatchNorm2d) else None


def staged_init_pairs(mode: str, source: nn.Module, target: nn.Module) -> list[tuple[str, str]]:
    """(source module, target module) names whose tensors ``mode`` copies, in order."""
    if mode not in INIT_MODES:
        raise UserError(f"unknown init mode {mode!r}; known: {', '.join(INIT_MODES)}.")
    if not isinstance(source, VGG) or not isinstance(target, VGG):
        raise UserError("--init-mode vgg-staged starts a VGG from a trained VGG (the paper's configuration A); "
                        "both the source run and the model must be VGGs.")
    target_at = {(stage, within): index for stage, within, index in conv_positions(target.features)}
    pairs = []
    for stage, within, index in conv_positions(source.features)[:STAGED_CONVS]:
        if (stage, within) not in target_at:
            raise UserError(f"the target has no convolution {within + 1} in stage {stage + 1} to take the "
                            f"source's features.{index}.")
        goal = target_at[(stage, within)]
        pairs.append((f"features.{index}", f"features.{goal}"))
        norms = following_norm(source.features, index), following_norm(target.features, goal)
        if None not in norms:
            pairs.append((f"features.{norms[0]}", f"features.{norms[1]}"))
    fc = [i for i, layer in enumerate(source.classifier) if isinstance(layer, nn.Linear)]
    pairs += [(f"classifier.{i}", f"classifier.{i}") for i in fc]
    return pairs


def copy_pairs(source: nn.Module, target: nn.Module, pairs: list[tuple[str, str]]) -> list[str]:
    """Copy each pair's tensors (parameters and buffers) where the shapes agree; returns one
    line per pair saying what happened."""
    modules_from, modules_to = dict(source.named_modules()), dict(target.named_modules())
    lines = []
    for name_from, name_to in pairs:
        tensors_from = modules_from[name_from].state_dict()
        tensors_to = modules_to[name_to].state_dict()
        mismatched = [k for k in tensors_to if k not in tensors_from or tensors_from[k].shape != tensors_to[k].shape]
        if mismatched:
            lines.append(f"kept {name_to} at random: its {', '.join(mismatched)} differ from {name_from}'s "
                         f"(e.g. another class count)")
            continue
        modules_to[name_to].load_state_dict(tensors_from)
        lines.append(f"copied {name_from} -> {name_to} ({', '.join(tensors_to)})")
    return lines
