"""VGG (Simonyan & Zisserman, 2014): every configuration of the paper's Table 1.

An architecture is a row of :data:`VGG_CONFIGS`; :func:`build_vgg` turns a row into a
network. Layer order and module indices follow the paper (and therefore torchvision),
so ``features.N`` of ``vgg16`` is the same layer as torchvision's ``features.N``.

Small inputs: the five max-pools round up (``ceil_mode=True``). For sizes divisible by
32 (224, 96, 64, 32) this is exactly the paper's halving; at 28 px the maps go
28 -> 14 -> 7 -> 4 -> 2 -> 1 instead of failing. The head always sees a 7x7 map
(adaptive average pooling, as torchvision does), so a 1x1 map is replicated 49 times.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

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


class VGG(nn.Module):
    """Convolutional body from a Table 1 row, then FC-4096, FC-4096, FC-classes."""

    def __init__(
        self,
        config: Sequence[LayerSpec],
        num_classes: int = 1000,
        in_chans: int = 3,
        batch_norm: bool = False,
        dropout: float = 0.5,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        self.features = make_features(config, in_chans, batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
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

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_vgg(config_name: str, batch_norm: bool = False, **kwargs) -> VGG:
    return VGG(VGG_CONFIGS[config_name], batch_norm=batch_norm, **kwargs)
