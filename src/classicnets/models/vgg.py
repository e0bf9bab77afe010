"""VGG (Simonyan & Zisserman, 2014): every configuration of the paper's Table 1.

An architecture is a row of :data:`VGG_CONFIGS`; :func:`build_vgg` turns a row into a
network. Layer order and module indices follow the paper (and therefore torchvision),
so ``features.N`` of ``vgg16`` is the same layer as torchvision's ``features.N``.

Small inputs: the five max-pools round up (``ceil_mode=True``). For sizes divisible by
32 (224, 96, 64, 32) this is exactly the paper's halving; at 28 px the maps go
28 -> 14 -> 7 -> 4 -> 2 -> 1 instead of failing. The head sees a 7x7 map by default
(adaptive average pooling, as torchvision does), so a 1x1 map is replicated 49 times;
``head_window=1`` lets the first FC layer read the 512 channels of a small input's 1x1 map
once (512 -> 4096 weights instead of 25088 -> 4096: VGG-11-BN at 28 px then costs 153 M
multiply-adds per image, not 253 M). The convolutions and the FC-4096, FC-4096, FC-classes
head of Table 1 are unchanged.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .protocol import FeaturesClassifierNet, FullyConnectedHead

PAPER = "Simonyan & Zisserman, 2014, Very Deep Convolutional Networks for Large-Scale Image Recognition"
YEAR = 2014
NATIVE_INPUT_SIZE = 224
MIN_INPUT_SIZE = 1  # ceil-mode pools keep every map at least 1x1

# Table 1 of the paper. An int is a 3x3 conv (stride 1, padding 1) with that many
# filters, ("1x1", n) a 1x1 conv (config C), "M" a 2x2/2 max-pool and "LRN" AlexNet's
# local response normalisation (config A-LRN). Every conv is followed by ReLU.
LayerSpec = Union[int, str, tuple]
VGG_CONFIGS: dict[str, list[LayerSpec]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M",
          256, 256, ("1x1", 256), "M", 512, 512, ("1x1", 512), "M", 512, 512, ("1x1", 512), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_lrn() -> nn.LocalResponseNorm:
    """AlexNet's LRN (size 5, alpha 1e-4, beta 0.75, k 2).

    AlexNet's formula multiplies the sum of squares by alpha; PyTorch multiplies by
    alpha / size, so the paper's alpha is passed as alpha * size.
    """
    size = 5
    return nn.LocalResponseNorm(size=size, alpha=1e-4 * size, beta=0.75, k=2.0)


def make_features(config: Sequence[LayerSpec], in_chans: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_chans
    for spec in config:
        if spec == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
        elif spec == "LRN":
            layers.append(make_lrn())
        else:
            kernel, width = (1, spec[1]) if isinstance(spec, tuple) else (3, spec)
            layers.append(nn.Conv2d(channels, width, kernel, padding=kernel // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
            channels = width
    return nn.Sequential(*layers)


class VGG(FeaturesClassifierNet):
    """Convolutional body from a Table 1 row, then FC-4096, FC-4096, FC-classes."""

    def __init__(
        self,
        config: Sequence[LayerSpec],
        num_classes: int = 1000,
        in_chans: int = 3,
        batch_norm: bool = False,
        dropout: float = 0.5,
        head_window: int = 7,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        if head_window < 1:
            raise ValueError(f"head_window must be at least 1, got {head_window}")
        self.features = make_features(config, in_chans, batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d((head_window, head_window))
        self.classifier = nn.Sequential(
            nn.Linear(512 * head_window * head_window, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        # Convs: Kaiming (He et al.), which trains the deep configs without the paper's
        # "initialise from config A" staging; FC: N(0, 0.01) as in the paper; biases 0.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ the model protocol

    def _stages(self) -> list[list[int]]:
        """Indices into ``features`` of each convolutional stage; a max-pool closes each."""
        stages, current = [], []
        for index, layer in enumerate(self.features):
            current.append(index)
            if isinstance(layer, nn.MaxPool2d):
                stages.append(current)
                current = []
        return stages + ([current] if current else [])

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """``block1`` .. ``block5``: the max-pool that ends each stage (a pool's output is
        never rewritten by an in-place ReLU, which Grad-CAM needs)."""
        return [(f"block{i + 1}", self.features[stage[-1]]) for i, stage in enumerate(self._stages())]

    def block_parts(self) -> dict[str, list[str]]:
        """Each convolution's output after its ReLU, per stage."""
        return {f"block{i + 1}": [f"features.{j}" for j in stage if isinstance(self.features[j], nn.ReLU)]
                for i, stage in enumerate(self._stages())}

    def summary_blocks(self) -> list[tuple[str, tuple[str, ...]]]:
        """The stages, then ``classifier`` (the average pool and the three FC layers)."""
        blocks = [(f"block{i + 1}", tuple(f"features.{j}" for j in stage)) for i, stage in enumerate(self._stages())]
        return blocks + [("classifier", ("avgpool", "classifier"))]

    def dense_head(self) -> FullyConnectedHead:
        return FullyConnectedHead(body=self.features, pool=self.avgpool, layers=self.classifier)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def penultimate_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 4096 outputs of the second FC layer after its ReLU (dropout is off in eval mode)."""
        return self.classifier[:-1](torch.flatten(self.avgpool(self.forward_features(x)), 1))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[-2:] == (1, 1) and self.avgpool.output_size != (1, 1):
            return self._head_over_copies(x)
        x = torch.flatten(self.avgpool(x), 1)  # N x 512*window*window
        return self.classifier(x)

    def _head_over_copies(self, x: torch.Tensor) -> torch.Tensor:
        """The head on a 1x1 map that the average pool would copy into every cell of its window.

        Every one of the first FC layer's window-cell weight blocks then multiplies the same 512
        numbers, so summing the blocks first gives the same product (up to rounding) with a
        49th of the multiply-adds, and autograd hands each block the same gradient, as the
        copies would. Training only: evaluation, hooks and analysis see the layers as written.
        VGG16 at 28 px trains about 1.4x faster on a CPU (BENCHMARKS.md, "Speed against a
        plain loop")."""
        first = self.classifier[0]
        weight = first.weight.unflatten(1, (x.shape[1], -1)).sum(-1)  # 4096 x 512: the blocks summed
        x = F.linear(torch.flatten(x, 1), weight, first.bias)  # N x 4096, as first(copies of x)
        return self.classifier[1:](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_vgg(config_name: str, batch_norm: bool = False, **kwargs) -> VGG:
    return VGG(VGG_CONFIGS[config_name], batch_norm=batch_norm, **kwargs)
