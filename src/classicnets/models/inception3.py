"""Inception v3 (Szegedy, Vanhoucke, Ioffe, Shlens & Wojna, 2015) in torchvision's layout.

"Rethinking the Inception Architecture" factorises large convolutions: a 5x5 into two
3x3s (Figure 5), an nxn into 1xn then nx1 (Figure 6, n = 7 on the 17x17 grid), and on
the 8x8 grid splits the 3x3s into parallel 1x3 and 3x1 outputs (Figure 7). The grid
shrinks by running a stride-2 conv branch beside a pooling branch and concatenating them
(Figure 10), so no pooling layer is a representational bottleneck. Every conv is
conv (no bias) -> batch norm (eps 0.001) -> ReLU (:class:`ConvBlock`, shared with
GoogLeNet). One auxiliary classifier sits on the last 17x17 map; the paper found that it
acts as a regulariser (with batch norm in the side head) rather than helping early
training, and dropped the lower one GoogLeNet had.

We build the network of the released model (TF-slim, and torchvision, whose module names
we use so its state dicts load one to one), which is what the usual figures describe:
27,161,264 parameters with the auxiliary head, 23,834,568 without, 5.71 G multiply-adds
at 299 px. It differs from the paper's Table 1 in small ways: after the first max-pool
the stem has a 1x1 conv of 80, a 3x3 conv of 192 and a second max-pool (Table 1 lists
3x3 convs only, one of them strided), and the 35x35 modules keep a 5x5 branch beside the
double-3x3 branch of Figure 5.

Modules are rows of :data:`MIXED_TABLE`. In training mode with ``aux_logits`` the forward
returns :class:`InceptionV3Output` ``(logits, aux)``; weight the auxiliary loss by
:data:`AUX_LOSS_WEIGHT`. ``transform_input`` re-normalises ImageNet-normalised input to the
[-1, 1] scale torchvision's ported weights expect (as in ``googlenet_tv``).

Small inputs: 75 px is the smallest input the main path runs at (the two stride-2
reductions after Mixed_5d need a 3x3 map). torchvision's auxiliary head fails below about
299 px in training mode (its 5x5/3 pool and 5x5 conv need a 17x17 map); ours pools the
map adaptively to 5x5 when the 5x5/3 pool would give less than 5x5, so training runs from
75 px too, and gives torchvision's numbers wherever torchvision runs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .googlenet import ConvBlock  # conv (no bias) -> BN (eps 1e-3) -> ReLU, as BasicConv2d
from .protocol import GlobalPoolHead

PAPER = ("Szegedy, Vanhoucke, Ioffe, Shlens & Wojna, 2015, "
         "Rethinking the Inception Architecture for Computer Vision")
YEAR = 2015
NATIVE_INPUT_SIZE = {"inception_v3": 299}
MIN_INPUT_SIZE = {"inception_v3": 75}

# The weight of the auxiliary classifier's cross-entropy in the training loss. The paper
# gives none; 0.4 is the usual practice for torchvision's Inception v3 (PyTorch's
# "Finetuning Torchvision Models" tutorial: loss = loss1 + 0.4 * loss2).
AUX_LOSS_WEIGHT = 0.4

# Module name -> (kind, input channels, width parameter). Kinds: "35" the 35x35 module
# (width = pool projection), "reduce35" 35 -> 17, "17" the 17x17 module with 1x7/7x1
# factorisation (width = channels inside the 7x7 branches), "reduce17" 17 -> 8, "8" the
# 8x8 module with split 1x3/3x1 outputs.
MIXED_TABLE: dict[str, tuple[str, int, int]] = {
    "Mixed_5b": ("35", 192, 32),
    "Mixed_5c": ("35", 256, 64),
    "Mixed_5d": ("35", 288, 64),
    "Mixed_6a": ("reduce35", 288, 0),
    "Mixed_6b": ("17", 768, 128),
    "Mixed_6c": ("17", 768, 160),
    "Mixed_6d": ("17", 768, 160),
    "Mixed_6e": ("17", 768, 192),
    "Mixed_7a": ("reduce17", 768, 0),
    "Mixed_7b": ("8", 1280, 0),
    "Mixed_7c": ("8", 2048, 0),
}
AUX_AFTER = "Mixed_6e"


class InceptionV3Output(NamedTuple):
    """What a training-mode forward returns when the auxiliary head is on."""

    logits: torch.Tensor
    aux: torch.Tensor  # head on Mixed_6e


def conv(in_ch: int, out_ch: int, kernel, stride: int = 1, padding=0) -> ConvBlock:
    return ConvBlock(in_ch, out_ch, kernel, stride=stride, padding=padding, batch_norm=True)


def avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.avg_pool2d(x, 3, stride=1, padding=1)


class Inception35(nn.Module):
    """35x35 grid: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 (Figure 5) | avg-pool -> 1x1."""

    def __init__(self, in_ch: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = conv(in_ch, 64, 1)
        self.branch5x5_1 = conv(in_ch, 48, 1)
        self.branch5x5_2 = conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = conv(in_ch, 64, 1)
        self.branch3x3dbl_2 = conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = conv(96, 96, 3, padding=1)
        self.branch_pool = conv(in_ch, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(avg_pool_3x3(x)),
        ], dim=1)


class Reduction35(nn.Module):
    """35x35 -> 17x17 (Figure 10): 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max-pool 3x3/2."""

    def __init__(self, in_ch: int, _: int = 0) -> None:
        super().__init__()
        self.branch3x3 = conv(in_ch, 384, 3, stride=2)
        self.branch3x3dbl_1 = conv(in_ch, 64, 1)
        self.branch3x3dbl_2 = conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            nn.functional.max_pool2d(x, 3, stride=2),
        ], dim=1)


class Inception17(nn.Module):
    """17x17 grid (Figure 6, n = 7): 1x1 | 1x1 -> 1x7 -> 7x1 | 1x1 -> (7x1 -> 1x7) x 2 |
    avg-pool -> 1x1; every branch ends at 192 channels."""

    def __init__(self, in_ch: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = conv(in_ch, 192, 1)
        self.branch7x7_1 = conv(in_ch, c7, 1)
        self.branch7x7_2 = conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = conv(in_ch, c7, 1)
        self.branch7x7dbl_2 = conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = conv(in_ch, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(avg_pool_3x3(x))], dim=1)


class Reduction17(nn.Module):
    """17x17 -> 8x8: 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max-pool 3x3/2."""

    def __init__(self, in_ch: int, _: int = 0) -> None:
        super().__init__()
        self.branch3x3_1 = conv(in_ch, 192, 1)
        self.branch3x3_2 = conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = conv(in_ch, 192, 1)
        self.branch7x7x3_2 = conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([
            self.branch3x3_2(self.branch3x3_1(x)), b7, nn.functional.max_pool2d(x, 3, stride=2),
        ], dim=1)


class Inception8(nn.Module):
    """8x8 grid (Figure 7): 1x1 | 1x1 -> (1x3, 3x1) | 1x1 -> 3x3 -> (1x3, 3x1) |
    avg-pool -> 1x1. The split outputs widen the representation on the coarsest grid."""

    def __init__(self, in_ch: int, _: int = 0) -> None:
        super().__init__()
        self.branch1x1 = conv(in_ch, 320, 1)
        self.branch3x3_1 = conv(in_ch, 384, 1)
        self.branch3x3_2a = conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = conv(in_ch, 448, 1)
        self.branch3x3dbl_2 = conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = conv(in_ch, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(s), self.branch3x3_2b(s),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(avg_pool_3x3(x)),
        ], dim=1)


MODULE_KINDS = {"35": Inception35, "reduce35": Reduction35, "17": Inception17,
                "reduce17": Reduction17, "8": Inception8}


class AuxHead(nn.Module):
    """Auxiliary classifier: 5x5/3 average pool, 1x1 conv 128, 5x5 conv 768, global
    average, FC. Below 17x17 maps the 5x5/3 pool gives less than the 5x5 its conv needs,
    so the map is pooled to 5x5 adaptively instead."""

    def __init__(self, in_ch: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = conv(in_ch, 128, 1)
        self.conv1 = conv(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if all(side >= 5 and (side - 5) // 3 + 1 >= 5 for side in x.shape[-2:]):
            x = nn.functional.avg_pool2d(x, 5, stride=3)  # N x 768 x 5 x 5 at 299 px
        else:
            x = nn.functional.adaptive_avg_pool2d(x, 5)  # N x 768 x 5 x 5
        x = self.conv1(self.conv0(x))  # N x 768 x 1 x 1
        x = nn.functional.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))  # N x num_classes


class Inception3(nn.Module):
    def __init__(self, num_classes: int = 1000, in_chans: int = 3, aux_logits: bool = True,
                 transform_input: bool = False, dropout: float = 0.5, init_weights: bool = True) -> None:
        super().__init__()
        if transform_input and in_chans != 3:
            raise ValueError("transform_input re-normalises RGB input and needs in_chans=3")
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        # Stem: five convs and two max-pools take 299 px to a 35x35 grid.
        self.Conv2d_1a_3x3 = conv(in_chans, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = conv(32, 32, 3)
        self.Conv2d_2b_3x3 = conv(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = conv(64, 80, 1)
        self.Conv2d_4a_3x3 = conv(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        for name, (kind, in_ch, width) in MIXED_TABLE.items():
            setattr(self, name, MODULE_KINDS[kind](in_ch, width))
            if name == AUX_AFTER:  # registered here so the state dict's order is torchvision's
                self.AuxLogits = AuxHead(768, num_classes) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2048, num_classes)
        if init_weights:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        # Truncated normal, std 0.1 (TF-slim's default, kept by torchvision); the aux
        # head's 5x5 conv and FC use 0.01 and 0.001 as torchvision's do.
        small = {}
        if self.AuxLogits is not None:
            small = {self.AuxLogits.conv1.conv: 0.01, self.AuxLogits.fc: 0.001}
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, mean=0.0, std=small.get(module, 0.1), a=-2, b=2)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def stem(self) -> nn.Conv2d:
        return self.Conv2d_1a_3x3.conv

    @property
    def head(self) -> nn.Linear:
        return self.fc

    @property
    def aux_outputs(self) -> dict[str, float]:
        """Auxiliary output name (as in :class:`InceptionV3Output`) -> loss weight."""
        return {"aux": AUX_LOSS_WEIGHT} if self.AuxLogits is not None else {}

    def aux_heads(self) -> dict[str, nn.Module]:
        """Auxiliary output name -> the head computing it (protocol; see models/protocol.py)."""
        return {"aux": self.AuxLogits} if self.AuxLogits is not None else {}

    def dense_head(self) -> GlobalPoolHead:
        """Global average pooling, dropout, one linear layer: dense already."""
        return GlobalPoolHead(linear=self.fc, dropout=self.dropout)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """The stem convs, then the Mixed modules, in forward order."""
        stem = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
        return [(name, getattr(self, name)) for name in stem + list(MIXED_TABLE)]

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        # ImageNet mean/std normalised input -> the [-1, 1] scale of the ported weights.
        mean = torch.tensor([0.485, 0.456, 0.406], device=x.device, dtype=x.dtype)
        std = torch.tensor([0.229, 0.224, 0.225], device=x.device, dtype=x.dtype)
        return x * (std / 0.5).view(1, 3, 1, 1) + ((mean - 0.5) / 0.5).view(1, 3, 1, 1)

    def _body(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.transform_input:
            x = self._transform_input(x)
        x = self.Conv2d_1a_3x3(x)  # N x 32 x 149 x 149
        x = self.Conv2d_2a_3x3(x)  # N x 32 x 147 x 147
        x = self.Conv2d_2b_3x3(x)  # N x 64 x 147 x 147
        x = self.maxpool1(x)  # N x 64 x 73 x 73
        x = self.Conv2d_3b_1x1(x)  # N x 80 x 73 x 73
        x = self.Conv2d_4a_3x3(x)  # N x 192 x 71 x 71
        x = self.maxpool2(x)  # N x 192 x 35 x 35
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # N x 288 x 35 x 35
        x = self.Mixed_6a(x)  # N x 768 x 17 x 17
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))  # N x 768 x 17 x 17
        aux = self.AuxLogits(x) if self.AuxLogits is not None and self.training else None
        x = self.Mixed_7a(x)  # N x 1280 x 8 x 8
        x = self.Mixed_7c(self.Mixed_7b(x))  # N x 2048 x 8 x 8
        return x, aux

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_7c's output (2048 channels) before global pooling."""
        return self._body(x)[0]

    def penultimate_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 2048 globally pooled features the FC layer reads (before dropout)."""
        return torch.flatten(self.avgpool(self.forward_features(x)), 1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 2048
        return self.fc(self.dropout(x))  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor | InceptionV3Output:
        features, aux = self._body(x)
        logits = self.forward_head(features)
        return InceptionV3Output(logits, aux) if aux is not None else logits


def inception_v3(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> Inception3:
    return Inception3(num_classes=num_classes, in_chans=in_chans, **kwargs)
