"""GoogLeNet / Inception v1 (Szegedy et al., 2014) in three faithful flavours.

* ``googlenet``: the paper's network with true 5x5 branches, each conv followed by
  batch norm (bias-free conv, eps 1e-3) and ReLU, two auxiliary heads.
* ``googlenet_paper``: the 2014 network as printed: conv biases, no batch norm, local
  response normalisation in the stem, dropout 40%.
* ``googlenet_tv``: torchvision's layout, so its ImageNet weights load: the "5x5" branch
  uses a 3x3 kernel, pools round up (``ceil_mode``) and the last stage pool is 2x2,
  and ``transform_input`` re-normalises ImageNet-normalised input as its weights expect.

The inception modules are rows of :data:`INCEPTION_TABLE` (the paper's Table 1);
:class:`GoogLeNetSpec` holds what differs between the flavours.

Small inputs: ``googlenet`` and ``googlenet_paper`` pool with 3x3/2 and padding 1, which
gives the paper's sizes at 224 (112 -> 56 -> 28 -> 14 -> 7) and never shrinks a map
below 1x1; at 28 px the maps go 14 -> 7 -> 4 -> 2 -> 1. ``googlenet_tv`` rounds up like
torchvision. The auxiliary heads of ``googlenet`` and ``googlenet_paper`` average-pool
5x5/3 as the paper does wherever that gives its 4x4 (maps of 14 to 16 px: 224 to 256 px
images), and pool to 4x4 adaptively elsewhere, so they run at any size (replicating values
on maps below 4x4). ``googlenet_tv`` pools adaptively everywhere, as torchvision does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from .protocol import GlobalPoolHead

PAPER = "Szegedy et al., 2014, Going Deeper with Convolutions"
YEAR = 2014
NATIVE_INPUT_SIZE = 224
MIN_INPUT_SIZE = {"googlenet": 1, "googlenet_paper": 1, "googlenet_tv": 15}  # padded pools; ceil-mode pools

# The weight of each auxiliary classifier's loss: "during training, their loss gets added to
# the total loss of the network with a discount weight (the losses of the auxiliary
# classifiers were weighted by 0.3)" (section 5).
AUX_LOSS_WEIGHT = 0.3

# Table 1: name -> (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
INCEPTION_TABLE: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def inception_out_channels(name: str) -> int:
    b1, _, b3, _, b5, bp = INCEPTION_TABLE[name]
    return b1 + b3 + b5 + bp


@dataclass(frozen=True)
class GoogLeNetSpec:
    batch_norm: bool  # conv-BN-ReLU (bias-free conv) instead of conv(+bias)-ReLU
    wide_kernel: int  # 5 as printed; 3 in torchvision's layout
    torchvision_pools: bool  # ceil-mode pools and a 2x2 last stage pool
    stem_lrn: bool  # LRN after the first max-pool and after the 3x3 conv
    dropout: float  # before the final linear layer


SPECS = {
    "googlenet": GoogLeNetSpec(batch_norm=True, wide_kernel=5, torchvision_pools=False,
                               stem_lrn=False, dropout=0.4),
    "googlenet_paper": GoogLeNetSpec(batch_norm=False, wide_kernel=5, torchvision_pools=False,
                                     stem_lrn=True, dropout=0.4),
    "googlenet_tv": GoogLeNetSpec(batch_norm=True, wide_kernel=3, torchvision_pools=True,
                                  stem_lrn=False, dropout=0.2),
}


class GoogLeNetOutput(NamedTuple):
    """What a training-mode forward returns when the auxiliary heads are on."""

    logits: torch.Tensor
    aux1: torch.Tensor  # head on inception 4a
    aux2: torch.Tensor  # head on inception 4d


class ConvBlock(nn.Module):
    """conv -> (batch norm) -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1,
                 padding: int = 0, batch_norm: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(out_ch, eps=0.001) if batch_norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def stage_pool(spec: GoogLeNetSpec, last: bool = False) -> nn.MaxPool2d:
    if spec.torchvision_pools:
        return nn.MaxPool2d(2 if last else 3, stride=2, ceil_mode=True)
    return nn.MaxPool2d(3, stride=2, padding=1)


class Inception(nn.Module):
    """Four parallel branches concatenated along channels."""

    def __init__(self, in_ch: int, row: tuple[int, ...], spec: GoogLeNetSpec) -> None:
        super().__init__()
        b1, b3_reduce, b3, b5_reduce, b5, pool_proj = row
        bn, k = spec.batch_norm, spec.wide_kernel
        self.branch1x1 = ConvBlock(in_ch, b1, 1, batch_norm=bn)
        self.branch3x3 = nn.Sequential(
            ConvBlock(in_ch, b3_reduce, 1, batch_norm=bn),
            ConvBlock(b3_reduce, b3, 3, padding=1, batch_norm=bn),
        )
        self.branch5x5 = nn.Sequential(
            ConvBlock(in_ch, b5_reduce, 1, batch_norm=bn),
            ConvBlock(b5_reduce, b5, k, padding=k // 2, batch_norm=bn),
        )
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=spec.torchvision_pools),
            ConvBlock(in_ch, pool_proj, 1, batch_norm=bn),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1x1, self.branch3x3, self.branch5x5, self.branch_pool)
        return torch.cat([branch(x) for branch in branches], dim=1)


class PaperAuxPool(nn.Module):
    """The paper's 5x5/3 average pool where it yields 4x4 (14x14 maps at 224 px); an
    adaptive pool to 4x4 at other sizes, where 5x5/3 would give another shape or fail."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if all((side - 5) // 3 + 1 == 4 for side in x.shape[-2:]):
            return nn.functional.avg_pool2d(x, 5, stride=3)
        return nn.functional.adaptive_avg_pool2d(x, 4)


class AuxHead(nn.Module):
    """Auxiliary classifier: pool to 4x4, 1x1 conv 128, FC 1024, dropout 70%, linear."""

    def __init__(self, in_ch: int, num_classes: int, batch_norm: bool, torchvision_pool: bool,
                 dropout: float = 0.7) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((4, 4)) if torchvision_pool else PaperAuxPool()
        self.conv = ConvBlock(in_ch, 128, 1, batch_norm=batch_norm)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


class GoogLeNet(nn.Module):
    def __init__(
        self,
        spec: GoogLeNetSpec = SPECS["googlenet"],
        num_classes: int = 1000,
        in_chans: int = 3,
        aux_logits: bool = True,
        transform_input: bool = False,
        dropout: float | None = None,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        if transform_input and in_chans != 3:
            raise ValueError("transform_input re-normalises RGB input and needs in_chans=3")
        self.spec = spec
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        bn = spec.batch_norm

        # Stem: 7x7/2 conv, pool, 1x1 reduce + 3x3 conv, pool (Table 1's first four rows).
        self.conv1 = ConvBlock(in_chans, 64, 7, stride=2, padding=3, batch_norm=bn)
        self.pool1 = stage_pool(spec)
        self.lrn1 = self._stem_lrn()
        self.conv2_reduce = ConvBlock(64, 64, 1, batch_norm=bn)
        self.conv2 = ConvBlock(64, 192, 3, padding=1, batch_norm=bn)
        self.lrn2 = self._stem_lrn()
        self.pool2 = stage_pool(spec)

        channels = 192
        for name in INCEPTION_TABLE:
            setattr(self, f"inception{name}", Inception(channels, INCEPTION_TABLE[name], spec))
            channels = inception_out_channels(name)
        self.pool3 = stage_pool(spec)
        self.pool4 = stage_pool(spec, last=True)

        tv_pool = spec.torchvision_pools
        self.aux1 = AuxHead(inception_out_channels("4a"), num_classes, bn, tv_pool) if aux_logits else None
        self.aux2 = AuxHead(inception_out_channels("4d"), num_classes, bn, tv_pool) if aux_logits else None

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(spec.dropout if dropout is None else dropout)
        self.fc = nn.Linear(channels, num_classes)
        if init_weights:
            self.reset_parameters()

    def _stem_lrn(self) -> nn.Module:
        # The reference Caffe model's LRN: size 5, alpha 1e-4, beta 0.75, k 1.
        if self.spec.stem_lrn:
            return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)
        return nn.Identity()

    def reset_parameters(self) -> None:
        # Small truncated normal weights (std 0.01), as torchvision initialises GoogLeNet.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, mean=0.0, std=0.01, a=-2, b=2)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        # torchvision's weights were trained on input scaled to [-1, 1]; this maps
        # ImageNet mean/std normalised input onto that scale, channel by channel.
        mean = torch.tensor([0.485, 0.456, 0.406], device=x.device, dtype=x.dtype)
        std = torch.tensor([0.229, 0.224, 0.225], device=x.device, dtype=x.dtype)
        return x * (std / 0.5).view(1, 3, 1, 1) + ((mean - 0.5) / 0.5).view(1, 3, 1, 1)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform_input:
            x = self._transform_input(x)
        x = self.lrn1(self.pool1(self.conv1(x)))
        return self.pool2(self.lrn2(self.conv2(self.conv2_reduce(x))))

    def _body(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        x = self.pool3(self.inception3b(self.inception3a(self._stem(x))))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.pool4(self.inception4e(x))
        return self.inception5b(self.inception5a(x)), aux1, aux2

    # ------------------------------------------------------------------ the model protocol

    @property
    def stem(self) -> nn.Conv2d:
        return self.conv1.conv

    @property
    def head(self) -> nn.Linear:
        return self.fc

    @property
    def aux_outputs(self) -> dict[str, float]:
        """The two auxiliary classifiers (named as in :class:`GoogLeNetOutput`) and their weight."""
        return {name: AUX_LOSS_WEIGHT for name in self.aux_heads()}

    def aux_heads(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in ("aux1", "aux2") if getattr(self, name) is not None}

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """The nine inception modules (the stem is ``stem1`` / ``stem2`` in summaries)."""
        return [(f"inception{name}", getattr(self, f"inception{name}")) for name in INCEPTION_TABLE]

    def block_parts(self) -> dict[str, list[str]]:
        """The stem convolutions, and the four branches of each inception module."""
        parts = {"stem1": ["conv1"], "stem2": ["conv2_reduce", "conv2"]}
        branches = ("branch1x1", "branch3x3", "branch5x5", "branch_pool")
        parts.update({name: [f"{name}.{b}" for b in branches] for name, _ in self.blocks()})
        return parts

    def summary_blocks(self) -> list[tuple[str, tuple[str, ...]]]:
        """``stem1`` (7x7 conv, max-pool), ``stem2`` (1x1 reduce, 3x3 conv, max-pool), each
        inception module and stage pool, ``aux1`` / ``aux2`` and ``head``."""
        groups: dict[str, list[str]] = {}
        for child, _ in self.named_children():
            groups.setdefault(_SUMMARY_GROUPS.get(child, child), []).append(child)
        return [(block, tuple(members)) for block, members in groups.items()]

    def dense_head(self) -> GlobalPoolHead:
        return GlobalPoolHead(linear=self.fc, dropout=self.dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last inception output (1024 channels) before global pooling."""
        return self._body(x)[0]

    def penultimate_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 1024 globally pooled features of inception 5b, what the linear layer reads."""
        return torch.flatten(self.avgpool(self.forward_features(x)), 1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutput:
        features, aux1, aux2 = self._body(x)
        logits = self.forward_head(features)
        if aux1 is not None and aux2 is not None:
            return GoogLeNetOutput(logits, aux1, aux2)
        return logits


_SUMMARY_GROUPS = {
    "conv1": "stem1", "pool1": "stem1", "lrn1": "stem1",
    "conv2_reduce": "stem2", "conv2": "stem2", "lrn2": "stem2", "pool2": "stem2",
    "avgpool": "head", "dropout": "head", "fc": "head",
}


def build_googlenet(flavour: str, **kwargs) -> GoogLeNet:
    return GoogLeNet(SPECS[flavour], **kwargs)
