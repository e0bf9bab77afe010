"""Inside the network: feature maps of one image, block by block, and first-layer filters.

Blocks, and the maps drawn for each, are what the network declares (its ``block_parts()``
or, by default, its ``blocks()``; see :mod:`~classicnets.models.protocol`):

* a VGG block (``block1`` .. ``block5``): the output of each convolution, after its ReLU;
* a GoogLeNet inception module (``inception3a`` ..): its four branches (1x1, 3x3,
  5x5, pool projection), each after its ReLU;
* a GoogLeNet stem (``stem1``, ``stem2``): its convolutions;
* any other network's block (a ResNet's ``layer2.1``, LeNet's ``C3``): its output. Blocks
  whose output is not a feature map at the image's size (LeNet's F6) are left out.

Any module name (as in ``model.named_modules()``) that outputs a feature map can be
asked for too; it is drawn alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..data.image_io import BadImageError, load_rgb
from ..errors import UserError
from ..models import protocol
from .figures import denormalize, grid_shape, rescale_each, save_figure, show_image
from .predict import preprocess


def prepare_image(path: str | os.PathLike, metadata: Mapping[str, Any]) -> torch.Tensor:
    """A photo as the run's network sees it (see :func:`.predict.preprocess`): ``[1, C, S, S]``."""
    if Path(path).is_dir():
        raise UserError(f"image {path} is a folder; activations draws one image file at a time.")
    if not Path(path).is_file():
        raise UserError(f"image {path} does not exist.")
    try:
        pixels = load_rgb(path)
    except BadImageError as error:
        raise UserError(f"cannot read image {path}: {error}.") from None
    return preprocess(pixels, metadata)[0]


def block_parts(model: nn.Module) -> dict[str, list[str]]:
    """Block name -> the modules whose outputs are drawn for it, as the model declares them."""
    protocol.require_protocol(model, "drawing activations")
    return protocol.block_parts(model)


def resolve_layers(model: nn.Module, requested: Sequence[str] | None,
                   image: torch.Tensor | None = None) -> dict[str, list[str]]:
    """``requested`` block or module names (all blocks when None) -> {figure name: modules}.

    With ``image``, every block is checked to output a feature map for it: when all blocks
    are asked for, those that do not are left out; a requested one is refused.
    """
    parts = block_parts(model)
    if not requested:
        return drawable_blocks(model, parts, image) if image is not None else parts
    modules = dict(model.named_modules())
    resolved = {}
    for name in requested:
        if name in parts:
            resolved[name] = parts[name]
        elif name in modules and name:
            resolved[name] = [name]
        else:
            raise UserError(f"no block or layer named {name!r} in {type(model).__name__}; "
                            f"blocks: {', '.join(parts)} (or a module name such as {next(iter(parts.values()))[0]}).")
    return resolved


def drawable_blocks(model: nn.Module, parts: dict[str, list[str]], image: torch.Tensor) -> dict[str, list[str]]:
    """The blocks of ``parts`` whose every module outputs a feature map for ``image``
    (found on a meta copy of the model: shapes only, no computation)."""
    probe = protocol.meta_copy(model).eval()
    modules = dict(probe.named_modules())
    dims: dict[str, int] = {}

    def hook_for(name: str):
        def record(_module: nn.Module, _inputs: object, output: object) -> None:
            dims.setdefault(name, output.dim() if isinstance(output, torch.Tensor) else 0)
        return record

    handles = [modules[name].register_forward_hook(hook_for(name)) for names in parts.values() for name in names]
    try:
        with torch.no_grad():
            probe(torch.empty(image.shape, dtype=image.dtype, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return {block: members for block, members in parts.items() if all(dims.get(m) == 4 for m in members)}


@torch.no_grad()
def capture_activations(model: nn.Module, images: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Outputs of the named modules for one forward pass in eval mode, in ``layers`` order."""
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def record(module: nn.Module, inputs: object, output: object) -> None:
            if name not in captured and isinstance(output, torch.Tensor):
                captured[name] = output.detach().clone()  # clone: a later in-place op must not change it
        return record

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in layers]
    was_training = model.training
    model.eval()
    try:
        model(images)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    missing = [name for name in layers if name not in captured]
    if missing:
        raise UserError(f"layer(s) {', '.join(missing)} did not run or produce a tensor at this input.")
    for name in layers:
        _check_feature_map(name, captured[name])
    return {name: captured[name] for name in layers}


def _check_feature_map(name: str, output: torch.Tensor) -> None:
    # The figures draw [N, C, H, W] maps; a flattened output (fc, dropout) has none to draw.
    if output.dim() != 4:
        raise UserError(f"layer {name} outputs {list(output.shape)}, not a feature map; "
                        f"choose a convolutional block or layer.")


def strongest_channels(activation: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` channels with the highest mean activation, strongest first."""
    means = activation.float().mean(dim=tuple(range(1, activation.dim())))
    return means.argsort(descending=True, stable=True)[:count]


def plot_activations(path: Path, image: torch.Tensor, activations: dict[str, torch.Tensor],
                     mean: Sequence[float], std: Sequence[float], title: str, channels: int = 8) -> Path:
    """One row per layer: the input image, then the ``channels`` strongest feature maps
    (as many as the widest layer has, at most)."""
    from matplotlib.figure import Figure

    rows = len(activations)
    channels = min(channels, max(a.shape[1] for a in activations.values()))  # no columns of empty axes
    figure = Figure(figsize=(1.5 * (channels + 1), 1.7 * rows + 0.5), layout="constrained")
    grid = figure.subplots(rows, channels + 1, squeeze=False)
    picture = denormalize(image, mean, std)[0]
    for row, (name, activation) in enumerate(activations.items()):
        maps = activation[0]  # [C, H, W] of the one image
        show_image(grid[row, 0], picture)
        grid[row, 0].set_ylabel(f"{name}\n{tuple(maps.shape)}", fontsize=7)
        chosen = strongest_channels(maps, channels)
        shown = rescale_each(maps[chosen])
        for column in range(channels):
            axes = grid[row, column + 1]
            axes.set_xticks([])
            axes.set_yticks([])
            if column < len(chosen):
                axes.imshow(shown[column].cpu().numpy(), cmap="viridis", vmin=0, vmax=1)
                axes.set_title(f"ch {int(chosen[column])}", fontsize=7)
            else:
                axes.axis("off")
    figure.suptitle(title)
    return save_figure(figure, path)


def first_conv(model: nn.Module) -> nn.Conv2d:
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise TypeError(f"{type(model).__name__} has no convolution")
    return conv


def plot_filters(path: Path, model: nn.Module, title: str, max_columns: int = 16) -> Path:
    """The first convolution's kernels, each stretched to [0, 1] on its own.

    Three input channels are drawn as colour; any other number as the per-pixel
    mean over input channels, in grey.
    """
    from matplotlib.figure import Figure

    weight = first_conv(model).weight.detach().float().cpu()  # [out, in, k, k]
    if weight.shape[1] != 3:
        weight = weight.mean(dim=1, keepdim=True)
    kernels = rescale_each(weight)
    rows, columns = grid_shape(kernels.shape[0], max_columns)
    figure = Figure(figsize=(0.8 * columns + 0.4, 0.8 * rows + 0.6), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for slot, axes in enumerate(grid.flat):
        if slot < kernels.shape[0]:
            show_image(axes, kernels[slot])
            axes.images[0].set_interpolation("nearest")  # a 3x3 kernel is nine squares, not a blur
        else:
            axes.axis("off")
    k = weight.shape[-1]
    figure.suptitle(f"{title}: {kernels.shape[0]} first-layer filters, {k}x{k}")
    return save_figure(figure, path)
