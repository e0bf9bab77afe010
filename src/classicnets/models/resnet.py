"""ResNet (He, Zhang, Ren & Sun, 2015): the ImageNet networks of Table 1 and the CIFAR-10
networks of Section 4.2.

ImageNet (``resnet18`` ... ``resnet152``): a 7x7/2 conv and a 3x3/2 max-pool, then four
stages of basic blocks (two 3x3 convs) or bottleneck blocks (1x1 reduce, 3x3, 1x1
expand x4) at 64/128/256/512 base widths, global average pooling and one FC layer. Every
conv is followed by batch norm; shortcuts are identities, and 1x1 projections with batch
norm where the shape changes (the paper's option B). The layout and module names are
torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ``fc``),
so its state dicts load one to one. The bottleneck nets put the stride-2 of a stage's
first block on the 3x3 conv, as torchvision does ("ResNet v1.5", after Facebook's
fb.resnet.torch; slightly more accurate, slightly more multiply-adds); the ``_paper``
variants put it on the first 1x1 conv as the paper does. Both have the same parameters.

CIFAR (``resnet20/32/44/56/110``, depth 6n+2): a 3x3 conv of 16 filters, three stages
of n basic blocks at 16/32/64 filters on 32/16/8 maps, global average pooling, FC.
Shortcuts are the paper's option A: identities, and where the shape changes, the input
subsampled by stride 2 with zero channels appended, so they add no parameters and the
counts match Table 6 (0.27 M ... 1.7 M).

Initialisation as in the paper (He et al., 2015b) and torchvision: Kaiming normal, fan
out, for convs; batch-norm scale 1 and shift 0; PyTorch's default for the FC layer.
``zero_init_residual`` starts each block's last batch-norm scale at 0 (Goyal et al., 2017),
as torchvision's option of the same name does.

Small inputs: every pool and strided conv is padded, so a map never shrinks below 1x1 and
the networks run at any input size in eval mode (:data:`MIN_INPUT_SIZE` is 1); an ImageNet
net's last stage sees 1x1 maps from 32 px down. The CIFAR nets suit 28-32 px images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Type, Union

import torch
from torch import nn

from .protocol import GlobalPoolHead

PAPER = "He, Zhang, Ren & Sun, 2015, Deep Residual Learning for Image Recognition"
YEAR = 2015

IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_WIDTHS = (16, 32, 64)


class BasicBlock(nn.Module):
    """Two 3x3 convs; the first may stride."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 stride_on_1x1: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4). The stride sits on the 3x3 conv (torchvision,
    "v1.5") or on the first 1x1 conv (the paper)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 stride_on_1x1: bool = False) -> None:
        super().__init__()
        stride_1x1, stride_3x3 = (stride, 1) if stride_on_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(in_ch, planes, 1, stride_1x1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride_3x3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by the stride and append zero channels; no parameters."""

    def __init__(self, out_ch: int, stride: int) -> None:
        super().__init__()
        self.out_ch, self.stride = out_ch, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.out_ch - x.shape[1]))


Block = Union[Type[BasicBlock], Type[Bottleneck]]


@dataclass(frozen=True)
class ResNetSpec:
    block: Block
    depths: tuple[int, ...]  # blocks per stage
    cifar: bool = False  # 3x3/16 stem, no max-pool, 16/32/64 widths, option A shortcuts
    stride_on_1x1: bool = False  # the paper's bottleneck stride placement


_N = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}  # depth = 6n + 2
SPECS: dict[str, ResNetSpec] = {
    "resnet18": ResNetSpec(BasicBlock, (2, 2, 2, 2)),
    "resnet34": ResNetSpec(BasicBlock, (3, 4, 6, 3)),
    "resnet50": ResNetSpec(Bottleneck, (3, 4, 6, 3)),
    "resnet101": ResNetSpec(Bottleneck, (3, 4, 23, 3)),
    "resnet152": ResNetSpec(Bottleneck, (3, 8, 36, 3)),
    "resnet50_paper": ResNetSpec(Bottleneck, (3, 4, 6, 3), stride_on_1x1=True),
    "resnet101_paper": ResNetSpec(Bottleneck, (3, 4, 23, 3), stride_on_1x1=True),
    "resnet152_paper": ResNetSpec(Bottleneck, (3, 8, 36, 3), stride_on_1x1=True),
    **{name: ResNetSpec(BasicBlock, (n, n, n), cifar=True) for name, n in _N.items()},
}

NATIVE_INPUT_SIZE = {name: 32 if spec.cifar else 224 for name, spec in SPECS.items()}
MIN_INPUT_SIZE = {name: 1 for name in SPECS}


class ResNet(nn.Module):
    def __init__(self, spec: ResNetSpec = SPECS["resnet18"], num_classes: int = 1000, in_chans: int = 3,
                 zero_init_residual: bool = False, init_weights: bool = True) -> None:
        super().__init__()
        self.spec = spec
        widths = CIFAR_WIDTHS if spec.cifar else IMAGENET_WIDTHS
        self.in_ch = widths[0]
        if spec.cifar:
            self.conv1 = nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False)
            self.maxpool = nn.Identity()  # kept so the stem ends in the same module name
        else:
            self.conv1 = nn.Conv2d(in_chans, widths[0], 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        for i, (width, depth) in enumerate(zip(widths, spec.depths)):
            setattr(self, f"layer{i + 1}", self._make_stage(width, depth, stride=1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.in_ch, num_classes)
        if init_weights:
            self.reset_parameters(zero_init_residual)

    def _shortcut(self, out_ch: int, stride: int) -> nn.Module | None:
        if stride == 1 and self.in_ch == out_ch:
            return None
        if self.spec.cifar:
            return ZeroPadShortcut(out_ch, stride)
        return nn.Sequential(nn.Conv2d(self.in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def _make_stage(self, width: int, depth: int, stride: int) -> nn.Sequential:
        block, out_ch = self.spec.block, width * self.spec.block.expansion
        blocks = [block(self.in_ch, width, stride, self._shortcut(out_ch, stride), self.spec.stride_on_1x1)]
        self.in_ch = out_ch
        blocks += [block(out_ch, width) for _ in range(depth - 1)]
        return nn.Sequential(*blocks)

    def reset_parameters(self, zero_init_residual: bool = False) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:  # each block then starts as the identity
            for block in self.modules():
                if isinstance(block, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(block.last_bn().weight)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.spec.depths))]

    @property
    def stem(self) -> nn.Conv2d:
        return self.conv1

    @property
    def head(self) -> nn.Linear:
        return self.fc

    @property
    def aux_outputs(self) -> dict[str, float]:
        return {}

    def dense_head(self) -> GlobalPoolHead:
        """Global average pooling, then one linear layer: dense already (protocol)."""
        return GlobalPoolHead(linear=self.fc)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """("stem", the module ending the stem), then every residual block ("layer1.0", ...);
        each module's output is that stage's output."""
        named: list[tuple[str, nn.Module]] = [("stem", self.maxpool)]
        for i, stage in enumerate(self.stages):
            named += [(f"layer{i + 1}.{j}", block) for j, block in enumerate(stage)]
        return named

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # Shapes at 224 px (ImageNet nets, base width 64, C = 512 x expansion).
        x = self.relu(self.bn1(self.conv1(x)))  # N x 64 x 112 x 112 (CIFAR: N x 16 x 32 x 32)
        x = self.maxpool(x)  # N x 64 x 56 x 56
        for stage in self.stages:  # 56 -> 28 -> 14 -> 7 (CIFAR: 32 -> 16 -> 8)
            x = stage(x)
        return x  # N x C x 7 x 7

    def penultimate_features(self, x: torch.Tensor) -> torch.Tensor:
        """The globally pooled features the FC layer reads (512, 2048 or 64 wide)."""
        return torch.flatten(self.avgpool(self.forward_features(x)), 1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_resnet(variant: str, **kwargs) -> ResNet:
    return ResNet(SPECS[variant], **kwargs)


def _builder(variant: str):
    default_classes = 10 if SPECS[variant].cifar else 1000

    def build(num_classes: int = default_classes, in_chans: int = 3, **kwargs) -> ResNet:
        return build_resnet(variant, num_classes=num_classes, in_chans=in_chans, **kwargs)

    build.__name__ = build.__qualname__ = variant
    build.__doc__ = f"``{variant}``: see the module docstring."
    return build


resnet18 = _builder("resnet18")
resnet34 = _builder("resnet34")
resnet50 = _builder("resnet50")
resnet101 = _builder("resnet101")
resnet152 = _builder("resnet152")
resnet50_paper = _builder("resnet50_paper")
resnet101_paper = _builder("resnet101_paper")
resnet152_paper = _builder("resnet152_paper")
resnet20 = _builder("resnet20")
resnet32 = _builder("resnet32")
resnet44 = _builder("resnet44")
resnet56 = _builder("resnet56")
resnet110 = _builder("resnet110")
