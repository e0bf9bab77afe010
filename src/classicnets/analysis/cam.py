"""Grad-CAM (Selvaraju et al., 2017): where in the image the network found its answer.

Captum's ``LayerGradCam`` weights each channel of a late feature map by the mean
gradient of the class score over that map and keeps the positive part of the sum. The
layer is the last block of the body: VGG's last stage output (``features[-1]``, the
last max-pool, so no in-place ReLU rewrites it before the gradient arrives) and
GoogLeNet's ``inception5b``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import UserError
from ..models import VGG, GoogLeNet

CAM_ALPHA = 0.45  # weight of the heat map in the overlay
COLORMAP = "jet"
DISPLAY_SIZE = 224  # overlays are enlarged to at least this many pixels on the shorter side


def cam_layer(model: nn.Module) -> nn.Module:
    if isinstance(model, VGG):
        return model.features[-1]
    if isinstance(model, GoogLeNet):
        return model.inception5b
    raise UserError(f"Grad-CAM knows the target layer of VGG and GoogLeNet only, not {type(model).__name__}.")


def grad_cam(model: nn.Module, image: torch.Tensor, target: int) -> torch.Tensor:
    """Heat map ``[H, W]`` in [0, 1] for class ``target`` of one normalised image ``[1, C, H, W]``.

    ``model`` must be in eval mode (GoogLeNet then returns plain logits).
    """
    from captum.attr import LayerAttribution, LayerGradCam

    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"expected one image [1, C, H, W], got {tuple(image.shape)}")
    with torch.enable_grad():
        attribution = LayerGradCam(model, cam_layer(model)).attribute(image, target=target, relu_attributions=True)
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
    temp = path.with_name(f".{path.name}.tmp")
    overlay(rgb, heat).save(temp, format="PNG")
    temp.replace(path)
