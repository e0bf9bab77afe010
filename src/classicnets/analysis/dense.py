"""Dense evaluation (VGG paper, section 3.2): the classifier applied at every position.

At test time the VGG paper turns the fully-connected layers into convolutions, "the
first FC layer to a 7x7 conv. layer, the last two FC layers to 1x1 conv. layers", and
applies the resulting fully-convolutional net to the whole, uncropped image. The output
is a class score map with one channel per class; it is averaged over space ("sum-pooled")
to give one score vector per image.

What a network's classifier is, it declares (``dense_head()``, see
:mod:`~classicnets.models.protocol`); nothing here looks at its family.

* FC layers over a fixed window (VGG: 7x7, AlexNet: 6x6; a
  :class:`~classicnets.models.protocol.FullyConnectedHead`): :class:`DenseFullyConnected`
  holds the same weights as the original head, reshaped. The first FC layer reads the
  pooled ``C x k x k`` map flattened in (channel, row, column) order, so its weight matrix
  ``[4096, C*k*k]`` reshapes directly to a ``[4096, C, k, k]`` kernel. On a ``k x k``
  feature map (a 224 px input) the score map is 1x1 and equals the original logits; a
  larger image gives a larger map. The original network instead average-pools any feature
  map to ``k x k`` (``AdaptiveAvgPool2d``), which is a different function on large images.
* Feature maps smaller than the window (VGG: inputs under 193 px) have no room for it.
  There :class:`DenseFullyConnected` falls back to the original path: adaptive pooling to
  the window, then the converted head, i.e. exactly the original logits.
* A global average pool and one linear layer (GoogLeNet, ResNet, Inception v3; a
  :class:`~classicnets.models.protocol.GlobalPoolHead`). Because the linear layer commutes
  with averaging, applying it at every position of the last feature map (a 1x1
  convolution) and averaging the score map gives the same numbers as the network itself,
  at any image size: such a network is already dense. :class:`DenseGlobalPool` makes that
  explicit (it exposes the score map) and reuses the network's own forward.
* A network that declares neither (LeNet-5) has no dense form: :func:`to_dense` refuses it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..models import protocol
from ..models.protocol import FullyConnectedHead, GlobalPoolHead

VGG_HEAD_WINDOW = 7  # the spatial size VGG's first FC layer was trained on


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


class DenseFullyConnected(nn.Module):
    """A network with its FC layers as ``k x k`` and 1x1 convolutions (k: the window its
    first FC layer reads, 7 for VGG, 6 for AlexNet)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        spec = protocol.dense_head(model)
        if not isinstance(spec, FullyConnectedHead):
            raise TypeError(f"{type(model).__name__} declares no fully-connected head")
        self.window = spec.window
        self.features = spec.body  # shared, not copied: the body is unchanged
        self.avgpool = spec.pool
        linears = [layer for layer in spec.layers if isinstance(layer, nn.Linear)]
        self.head = nn.Sequential(*(self._convert(layer, first=layer is linears[0], window=self.window)
                                    for layer in spec.layers))  # AlexNet's head starts with dropout
        self.train(model.training)

    @staticmethod
    def _convert(layer: nn.Module, first: bool, window: int) -> nn.Module:
        if not isinstance(layer, nn.Linear):
            return layer  # ReLU and dropout act elementwise, so they carry over as they are
        if first:
            return linear_to_conv(layer, layer.in_features // window ** 2, window)
        return linear_to_conv(layer, layer.in_features, 1)

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores at every window of the feature map: ``[N, classes, h - k + 1, w - k + 1]``."""
        features = self.features(x)
        if min(features.shape[-2:]) < self.window:
            features = self.avgpool(features)  # too small for a window: the original path
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_map(x).mean(dim=(2, 3))


class DenseGlobalPool(nn.Module):
    """The network's own forward, plus its class score map before the global average."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        spec = protocol.dense_head(model)
        if not isinstance(spec, GlobalPoolHead):
            raise TypeError(f"{type(model).__name__} declares no global-pool head")
        self.model = model
        self.linear = spec.linear
        self.dropout = spec.dropout if spec.dropout is not None else nn.Identity()
        self.train(model.training)

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """The final linear layer at every position of the last feature map."""
        features = self.model.forward_features(x)
        scores = torch.einsum("nchw,kc->nkhw", self.dropout(features), self.linear.weight)
        return scores + self.linear.bias.view(1, -1, 1, 1) if self.linear.bias is not None else scores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Averaging the score map equals the model's own logits (linearity), so the
        # model's forward is used: one matrix product per image instead of h*w.
        return self.model(x)


# The names these had when VGG and GoogLeNet were the only networks.
DenseVGG = DenseFullyConnected
DenseGoogLeNet = DenseGlobalPool


def dense_kind(model: nn.Module) -> str | None:
    """``"fully-connected"`` (FC layers to convert), ``"global-pool"`` (dense already) or
    None (no dense form), as the network declares it."""
    spec = protocol.dense_head(model) if protocol.is_protocol_model(model) else None
    if isinstance(spec, FullyConnectedHead):
        return "fully-connected"
    return "global-pool" if isinstance(spec, GlobalPoolHead) else None


def dense_window(model: nn.Module) -> int:
    """The side of the window a fully-connected head reads (VGG 7, AlexNet 6)."""
    spec = protocol.dense_head(model)
    if not isinstance(spec, FullyConnectedHead):
        raise TypeError(f"{type(model).__name__} declares no fully-connected head")
    return spec.window


def feature_size(model: nn.Module, image_size: int) -> int:
    """Side of the last feature map for a square input (measured on a meta copy: free)."""
    return protocol.feature_map_side(model, image_size)


vgg_feature_size = feature_size  # its name when VGG was the one network with a dense form


def smallest_dense_size(model: nn.Module, image_size: int, limit: int = 1 << 15) -> int | None:
    """The smallest input side from ``image_size`` up whose feature map is larger than the
    head's window (where dense evaluation first differs from the plain network), or None."""
    window = dense_window(model)
    if feature_size(model, image_size) > window:
        return image_size
    low, high = image_size, min(limit, max(2 * image_size, 64))
    while feature_size(model, high) <= window:  # the map grows with the input: bracket, then halve
        if high >= limit:
            return None
        low, high = high, min(limit, 2 * high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if feature_size(model, middle) > window else (middle, high)
    return high


def to_dense(model: nn.Module) -> DenseFullyConnected | DenseGlobalPool:
    """The dense-evaluation form of one of this package's networks (see the module docstring)."""
    if not protocol.is_protocol_model(model):
        raise TypeError(f"dense evaluation needs a network that declares its head (such as a VGG or GoogLeNet), "
                        f"got {type(model).__name__}")
    kind = dense_kind(model)
    if kind == "fully-connected":
        return DenseFullyConnected(model)
    if kind == "global-pool":
        return DenseGlobalPool(model)
    raise UserError(f"a {type(model).__name__} has no fully-connected head over a feature map to turn into "
                    f"convolutions, so dense evaluation does not apply to it.")
