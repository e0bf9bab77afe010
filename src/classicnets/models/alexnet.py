"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) as printed, and torchvision's one-tower form.

* ``alexnet_paper``: Section 3 and Figure 2 of the paper. Five convolutions of 96, 256,
  384, 384 and 256 filters; conv1 is 11x11 stride 4 without padding, which gives the
  paper's 55x55 maps from a 227x227 input (the paper says 224, but 55 = (227 - 11)/4 + 1).
  The model was split over two GPUs and conv2, conv4 and conv5 only see the kernel maps on
  their own GPU: here those are grouped convolutions (``groups=2``), which has exactly the
  paper's weights; conv3 and the FC layers talk across GPUs and are ungrouped. Local
  response normalisation (k 2, n 5, alpha 1e-4, beta 0.75) follows the ReLU of conv1 and
  conv2, before their pooling; max-pooling overlaps (3x3, stride 2). The head is
  FC-4096, FC-4096, FC-classes with dropout 0.5 on the outputs of the first two, as the
  paper applies it. Weights start N(0, 0.01); biases 1 in conv2, conv4, conv5 and the
  hidden FC layers (so ReLUs start with positive input), 0 elsewhere (Section 5).
  60,965,224 parameters at 1000 classes.
* ``alexnet``: torchvision's layout (from "One weird trick", Krizhevsky 2014): one tower
  of 64, 192, 384, 256 and 256 filters, conv1 padded by 2, no LRN, dropout before the
  first two FC layers, PyTorch's default initialisation. Module indices (``features.N``,
  ``classifier.N``) are torchvision's, so its weights load one to one. 61,100,840
  parameters; about 0.714 G multiply-adds at 224 px.

Both are rows of :data:`ALEXNET_CONFIGS`, built by :func:`build_alexnet`.

Small inputs: the head always sees 6x6 maps (adaptive average pooling, as torchvision
does; the identity at 227 px for the paper's net and 224 px for ``alexnet``), so any input
runs that survives the three 3x3/2 pools: 63 px and up for ``alexnet``, 67 px and up for
``alexnet_paper`` (:data:`MIN_INPUT_SIZE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch
from torch import nn

from .protocol import FeaturesClassifierNet, FullyConnectedHead
from .vgg import make_lrn  # AlexNet's LRN, with PyTorch's alpha/size convention handled

PAPER = ("Krizhevsky, Sutskever & Hinton, 2012, "
         "ImageNet Classification with Deep Convolutional Neural Networks")
YEAR = 2012
NATIVE_INPUT_SIZE = {"alexnet_paper": 227, "alexnet": 224}
MIN_INPUT_SIZE = {"alexnet_paper": 67, "alexnet": 63}

# A conv is (filters, kernel, stride, padding, groups), always followed by ReLU; "LRN" is
# local response normalisation and "M" an overlapping 3x3/2 max-pool.
LayerSpec = Union[tuple[int, int, int, int, int], str]
ALEXNET_CONFIGS: dict[str, list[LayerSpec]] = {
    "alexnet_paper": [(96, 11, 4, 0, 1), "LRN", "M", (256, 5, 1, 2, 2), "LRN", "M",
                      (384, 3, 1, 1, 1), (384, 3, 1, 1, 2), (256, 3, 1, 1, 2), "M"],
    "alexnet": [(64, 11, 4, 2, 1), "M", (192, 5, 1, 2, 1), "M",
                (384, 3, 1, 1, 1), (256, 3, 1, 1, 1), (256, 3, 1, 1, 1), "M"],
}


@dataclass(frozen=True)
class AlexNetSpec:
    config: Sequence[LayerSpec]
    dropout_after_fc: bool  # the paper drops FC6/FC7 outputs; torchvision drops their inputs
    paper_init: bool  # N(0, 0.01) and the paper's unit biases; else PyTorch's defaults


SPECS = {
    "alexnet_paper": AlexNetSpec(ALEXNET_CONFIGS["alexnet_paper"], dropout_after_fc=True, paper_init=True),
    "alexnet": AlexNetSpec(ALEXNET_CONFIGS["alexnet"], dropout_after_fc=False, paper_init=False),
}


def make_features(config: Sequence[LayerSpec], in_chans: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_chans
    for spec in config:
        if spec == "M":
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
        elif spec == "LRN":
            layers.append(make_lrn())
        else:
            width, kernel, stride, padding, groups = spec
            layers.append(nn.Conv2d(channels, width, kernel, stride, padding, groups=groups))
            layers.append(nn.ReLU(inplace=True))
            channels = width
    return nn.Sequential(*layers)


def make_classifier(in_features: int, num_classes: int, dropout: float, after_fc: bool) -> nn.Sequential:
    if after_fc:
        return nn.Sequential(
            nn.Linear(in_features, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
    return nn.Sequential(
        nn.Dropout(dropout), nn.Linear(in_features, 4096), nn.ReLU(inplace=True),
        nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )


class AlexNet(FeaturesClassifierNet):
    def __init__(self, spec: AlexNetSpec = SPECS["alexnet"], num_classes: int = 1000, in_chans: int = 3,
                 dropout: float = 0.5, init_weights: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.features = make_features(spec.config, in_chans)
        last_width = [s for s in spec.config if isinstance(s, tuple)][-1][0]
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = make_classifier(last_width * 6 * 6, num_classes, dropout, spec.dropout_after_fc)
        if init_weights and spec.paper_init:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        # Section 5: N(0, 0.01) weights; bias 1 for conv2, conv4, conv5 and the hidden FC
        # layers, which "accelerates the early stages of learning"; 0 for the rest.
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        linears = [m for m in self.classifier if isinstance(m, nn.Linear)]
        unit_bias = {convs[1], convs[3], convs[4], linears[0], linears[1]}
        for module in convs + linears:
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.constant_(module.bias, 1.0 if module in unit_bias else 0.0)

    def dense_head(self) -> FullyConnectedHead:
        """The FC layers read a 6x6 window: dense evaluation makes them 6x6 and 1x1 convolutions."""
        return FullyConnectedHead(body=self.features, pool=self.avgpool, layers=self.classifier)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """conv1..conv5 and the pools after conv1, conv2 and conv5 (pool1, pool2, pool5)."""
        named, convs = [], 0
        for layer in self.features:
            if isinstance(layer, nn.Conv2d):
                convs += 1
                named.append((f"conv{convs}", layer))
            elif isinstance(layer, nn.MaxPool2d):
                named.append((f"pool{convs}", layer))
        return named

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # N x 256 x 6 x 6 at the native size

    def penultimate_features(self, x: torch.Tensor) -> torch.Tensor:
        """FC7's 4096 ReLU outputs, what the last linear layer reads."""
        x = torch.flatten(self.avgpool(self.forward_features(x)), 1)  # N x 9216
        return self.classifier[:-1](x)  # N x 4096

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 9216
        return self.classifier(x)  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_alexnet(variant: str, **kwargs) -> AlexNet:
    return AlexNet(SPECS[variant], **kwargs)


def alexnet_paper(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> AlexNet:
    return build_alexnet("alexnet_paper", num_classes=num_classes, in_chans=in_chans, **kwargs)


def alexnet(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> AlexNet:
    return build_alexnet("alexnet", num_classes=num_classes, in_chans=in_chans, **kwargs)
