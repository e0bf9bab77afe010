"""Dense evaluation (VGG paper, section 3.2): the classifier applied at every position.

At test time the VGG paper turns the fully-connected layers into convolutions, "the
first FC layer to a 7x7 conv. layer, the last two FC layers to 1x1 conv. layers", and
applies the resulting fully-convolutional net to the whole, uncropped image. The output
is a class score map with one channel per class; it is averaged over space ("sum-pooled")
to give one score vector per image.

* VGG: :class:`DenseVGG` holds the same weights as the original head, reshaped. The
  first FC layer reads the 512x7x7 pooled map flattened in (channel, row, column) order,
  so its weight matrix ``[4096, 512*7*7]`` reshapes directly to a ``[4096, 512, 7, 7]``
  kernel. On a 7x7 feature map (a 224 px input) the score map is 1x1 and equals the
  original logits; a larger image gives a larger map. The original network instead
  average-pools any feature map to 7x7 (``AdaptiveAvgPool2d``), which is a different
  function on large images.
* Feature maps smaller than 7x7 (inputs under 193 px) have no room for a 7x7 window.
  There :class:`DenseVGG` falls back to the original path: adaptive pooling to 7x7,
  then the converted head, i.e. exactly the original logits.
* GoogLeNet ends with a global average pool and one linear layer. Because the linear
  layer commutes with averaging, applying it at every position of the last feature map
  (a 1x1 convolution) and averaging the score map gives the same numbers as the network
  itself, at any image size: GoogLeNet is already dense. :class:`DenseGoogLeNet` makes
  that explicit (it exposes the score map) and reuses the network's own forward.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.googlenet import GoogLeNet
from ..models.vgg import VGG

VGG_HEAD_WINDOW = 7  # the spatial size the first FC layer was trained on


def linear_to_conv(linear: nn.Linear, in_channels: int, kernel_size: int) -> nn.Conv2d:
    """A conv computing ``linear`` on every ``kernel_size`` window of a map with ``in_channels``.

    ``linear`` must read its input flattened as (channel, row, column), which is what
    ``torch.flatten(x, 1)`` produces from an NCHW map.
    """
    expected = in_channels * kernel_size * kernel_size
    if linear.in_features != expected:
        raise ValueError(f"a Linear with {linear.in_features} inputs cannot read a "
                         f"{in_channels}x{kernel_size}x{kernel_size} window ({expected} values)")
    conv = nn.Conv2d(in_channels, linear.out_features, kernel_size, bias=linear.bias is not None)
    conv = conv.to(device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.reshape(linear.out_features, in_channels, kernel_size, kernel_size))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv


class DenseVGG(nn.Module):
    """A :class:`~classicnets.models.vgg.VGG` with its FC layers as 7x7 and 1x1 convolutions."""

    def __init__(self, model: VGG) -> None:
        super().__init__()
        self.features = model.features  # shared, not copied: the body is unchanged
        self.avgpool = model.avgpool
        self.head = nn.Sequential(*(self._convert(layer, index) for index, layer in enumerate(model.classifier)))
        self.train(model.training)

    @staticmethod
    def _convert(layer: nn.Module, index: int) -> nn.Module:
        if not isinstance(layer, nn.Linear):
            return layer  # ReLU and dropout act elementwise, so they carry over as they are
        if index == 0:
            return linear_to_conv(layer, layer.in_features // VGG_HEAD_WINDOW ** 2, VGG_HEAD_WINDOW)
        return linear_to_conv(layer, layer.in_features, 1)

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores at every 7x7 window of the feature map: ``[N, classes, h - 6, w - 6]``."""
        features = self.features(x)
        if min(features.shape[-2:]) < VGG_HEAD_WINDOW:
            features = self.avgpool(features)  # too small for a window: the original path
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_map(x).mean(dim=(2, 3))


class DenseGoogLeNet(nn.Module):
    """GoogLeNet's own forward, plus its class score map before the global average."""

    def __init__(self, model: GoogLeNet) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """The final linear layer at every position of the last inception output."""
        features = self.model.forward_features(x)
        fc = self.model.fc
        scores = torch.einsum("nchw,kc->nkhw", self.model.dropout(features), fc.weight)
        return scores + fc.bias.view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Averaging the score map equals the model's own logits (linearity), so the
        # model's forward is used: one matrix product per image instead of h*w.
        return self.model(x)


def vgg_feature_size(model: VGG, image_size: int) -> int:
    """Side of VGG's last feature map for a square input (3x3 convs keep the size, pools halve it, rounding up)."""
    size = image_size
    for layer in model.features:
        if isinstance(layer, nn.MaxPool2d):
            size = -(-size // 2)
    return size


def to_dense(model: nn.Module) -> DenseVGG | DenseGoogLeNet:
    """The dense-evaluation form of one of this package's networks (see the module docstring)."""
    if isinstance(model, VGG):
        return DenseVGG(model)
    if isinstance(model, GoogLeNet):
        return DenseGoogLeNet(model)
    raise TypeError(f"dense evaluation needs a VGG or GoogLeNet, got {type(model).__name__}")
