"""Grad-CAM (Selvaraju et al., 2017): where in the image the network found its answer.

Captum's ``LayerGradCam`` weights each channel of a late feature map by the mean
gradient of the class score over that map and keeps the positive part of the sum. The
layer is chosen among the blocks the network declares (its ``blocks()``, see
:mod:`~classicnets.models.protocol`): the deepest whose map is still at least 4x4 at the
image's size. At 224 px that is the paper networks' last block (VGG's last max-pool,
GoogLeNet's ``inception5b``, both 7x7). At 28 px those maps are 1x1, and a 1x1 map shows
no "where": the overlay would be one flat colour. There it is VGG's third max-pool and
GoogLeNet's ``inception3b`` (both 4x4). VGG declares its max-pool outputs as its blocks so
that no in-place ReLU rewrites the map before the gradient arrives. Blocks without a
feature map (LeNet's F6) are never chosen; a network with none is refused.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torch import nn

from ..errors import UserError
from ..files import atomic_write_bytes
from ..models import protocol

CAM_ALPHA = 0.45  # weight of the heat map in the overlay
COLORMAP = "jet"
DISPLAY_SIZE = 224  # overlays are enlarged to at least this many pixels on the shorter side


MIN_CAM_SIDE = 4  # smallest map side worth showing; below it, a shallower block is used


def cam_candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The blocks Grad-CAM may use, shallow to deep: (qualified module name, module)."""
    protocol.require_protocol(model, "Grad-CAM")
    return [(qualified, module) for _, qualified, module in protocol.named_blocks(model)]


def cam_layer(model: nn.Module, image: torch.Tensor) -> tuple[str, nn.Module]:
    """(name, block): the deepest candidate whose map for ``image`` has a side of at least
    MIN_CAM_SIDE, or, for images too small for any, the deepest of the largest maps."""
    candidates = cam_candidates(model)
    sides: dict[str, int] = {}

    def record_side(name: str):
        def record(_module: nn.Module, _inputs: object, output: object) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == 4:  # a feature map, not flat features
                sides[name] = min(output.shape[-2:])
        return record

    hooks = [block.register_forward_hook(record_side(name)) for name, block in candidates]
    try:
        with torch.no_grad():
            model(image)
    finally:
        for hook in hooks:
            hook.remove()
    if not sides:
        raise UserError(f"Grad-CAM needs a feature map, and none of the blocks of this {type(model).__name__} "
                        f"outputs one at {image.shape[-1]} px.")
    wanted = min(MIN_CAM_SIDE, max(sides.values()))
    return [(name, block) for name, block in candidates if sides.get(name, 0) >= wanted][-1]


def grad_cam(model: nn.Module, image: torch.Tensor, target: int, layer: nn.Module | None = None) -> torch.Tensor:
    """Heat map ``[H, W]`` in [0, 1] for class ``target`` of one normalised image ``[1, C, H, W]``.

    ``model`` must be in eval mode (a network with auxiliary heads then returns plain logits). ``layer`` is the
    block to take it at; by default :func:`cam_layer` chooses it for this image's size (pass
    it when many images of one size share it, to spare that extra forward pass each).
    """
    from captum.attr import LayerAttribution, LayerGradCam

    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"expected one image [1, C, H, W], got {tuple(image.shape)}")
    if layer is None:
        _, layer = cam_layer(model, image)
    with torch.enable_grad():
        attribution = LayerGradCam(model, layer).attribute(image, target=target, relu_attributions=True)
    heat = LayerAttribution.interpolate(attribution.detach(), tuple(image.shape[-2:]), interpolate_mode="bilinear")
    heat = heat[0, 0].clamp(min=0)
    peak = heat.max()
    return heat / peak if peak > 0 else heat  # a flat map when no location raised the score


def overlay(rgb: torch.Tensor, heat: torch.Tensor, alpha: float = CAM_ALPHA,
            min_size: int = DISPLAY_SIZE) -> Image.Image:
    """Blend a heat map (coloured with the jet colormap) over a uint8 image ``[C, H, W]``.

    Small inputs (a 64 px run) are enlarged to ``min_size`` on their shorter side so
    the overlay can be looked at.
    """
    from matplotlib import colormaps

    height, width = rgb.shape[-2:]
    scale = max(1.0, min_size / min(height, width))
    size = (round(height * scale), round(width * scale))
    image = F.interpolate(rgb[None].float(), size=size, mode="bilinear", align_corners=False)[0] / 255
    heat = F.interpolate(heat[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    base = image.clamp(0, 1).expand(3, -1, -1).permute(1, 2, 0).cpu().numpy()
    coloured = colormaps[COLORMAP](heat.clamp(0, 1).cpu().numpy())[..., :3].astype(np.float32)
    blended = (1 - alpha) * base + alpha * coloured
    return Image.fromarray(np.clip(np.rint(blended * 255), 0, 255).astype(np.uint8), mode="RGB")


def save_overlay(path: Path, rgb: torch.Tensor, heat: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tags = PngInfo()
    tags.add_text("Software", "classicnets")  # marks it as a drawing, which a later run may replace
    buffer = io.BytesIO()
    overlay(rgb, heat).save(buffer, format="PNG", pnginfo=tags)
    atomic_write_bytes(path, buffer.getvalue())
