"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, 1998) as printed, and its common modern form.

* ``lenet5_paper``: Section II.B of the paper. A 32x32 input (MNIST's 28x28 digits padded
  by 2, as the paper did), C1 6 maps 5x5, S2 trainable subsampling (the sum of each 2x2
  window times a trainable coefficient plus a trainable bias, one pair per map), C3 16
  maps 5x5 wired by the partial connection table (Table I), S4 like S2, C5 120 maps 5x5
  (a convolution that happens to produce 1x1 maps at 32 px), F6 84 units, and a fixed
  Euclidean RBF output layer. Every layer up to F6 ends in the paper's squashing function
  f(a) = 1.7159 tanh(2a/3) (Appendix A). Weights start uniform in +-2.4 / fan-in (Appendix A).
  It has exactly 60,000 trainable parameters at 10 classes and one input channel.
* ``lenet5``: what "LeNet-5" means in most courses today: C3 connected to all six S2
  maps, 2x2 max-pooling, ReLU, and a plain linear output for softmax/cross-entropy.
  C1 pads by 2, so 28x28 Fashion-MNIST/MNIST images go in as they are and every later
  map has the paper's size (28 -> 14 -> 10 -> 5 -> 1).

The RBF output: unit k computes the squared Euclidean distance between F6's state and
a fixed parameter vector c_k (a buffer, never trained). The paper drew the c_k as
stylised 7x12 bitmaps of the digits in +1/-1. We use fixed +1/-1 codes for every class
count instead (:func:`rbf_codes`): the rows of Paley's 84x84 Hadamard matrix, which are
mutually orthogonal, so any two classes are equally far apart (squared distance 168);
the paper's bitmaps were chosen for a different reason (confusable characters such as
O/0 should be close), which does not apply to an arbitrary class list. The forward pass
returns the *negative* squared distances as logits: cross-entropy on them is the
paper's discriminative "MAP" loss (Section II.C) without its constant j, so training needs no
special loss, and the largest logit is the nearest code, as in the paper.

The connection counts of Section II.B (C1 122,304 ... F6 10,164) are computed from the
built network by :func:`lenet5_paper_layer_table`, not typed in.

Small inputs: ``lenet5_paper`` needs exactly 32x32 (C5 must reduce its input to 1x1 for
F6). ``lenet5`` pools S4's output to 5x5 adaptively (the identity at 28 px), so it runs
from 12 px up.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import torch
from torch import nn

PAPER = "LeCun, Bottou, Bengio & Haffner, 1998, Gradient-Based Learning Applied to Document Recognition"
YEAR = 1998
NATIVE_INPUT_SIZE = {"lenet5_paper": 32, "lenet5": 28}
MIN_INPUT_SIZE = {"lenet5_paper": 32, "lenet5": 12}

# Table I: which S2 maps each C3 map reads. Maps 0-5 read 3 contiguous maps, 6-11 read
# 4 contiguous, 12-14 read 4 non-contiguous, 15 reads all 6 ("contiguous" wraps round).
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)
C3_FULL: tuple[tuple[int, ...], ...] = tuple(tuple(range(6)) for _ in range(16))

F6_UNITS = 84  # the paper's 7x12 bitmap size


@dataclass(frozen=True)
class LeNetSpec:
    c1_padding: int  # 0 as printed (input already 32x32); 2 to take 28x28 directly
    c3_table: tuple[tuple[int, ...], ...]  # Table I, or every map from every map
    trainable_subsampling: bool  # S2/S4 as printed; else 2x2 max-pooling
    scaled_tanh: bool  # the paper's squashing function; else ReLU
    rbf_output: bool  # fixed Euclidean RBF units; else a linear layer
    resize_to_5x5: bool  # average S4's maps to C5's 5x5 at any input size; as printed, 32 px only


SPECS = {
    "lenet5_paper": LeNetSpec(c1_padding=0, c3_table=C3_TABLE, trainable_subsampling=True,
                              scaled_tanh=True, rbf_output=True, resize_to_5x5=False),
    "lenet5": LeNetSpec(c1_padding=2, c3_table=C3_FULL, trainable_subsampling=False,
                        scaled_tanh=False, rbf_output=False, resize_to_5x5=True),
}


class ScaledTanh(nn.Module):
    """f(a) = A tanh(S a), A = 1.7159, S = 2/3: f(1) = 1 and f(-1) = -1 (Appendix A)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class Subsampling(nn.Module):
    """S2/S4: the sum of each non-overlapping 2x2 window, times a trainable coefficient,
    plus a trainable bias, one of each per map (the squashing follows outside)."""

    window = 2

    def __init__(self, maps: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(maps))
        self.bias = nn.Parameter(torch.zeros(maps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.window
        summed = nn.functional.avg_pool2d(x, k) * (k * k)
        return summed * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv(nn.Module):
    """A convolution where output map j sees only the input maps in ``table[j]``.

    Consecutive output maps with the same number of inputs form one grouped convolution
    over their gathered inputs, so the weights are exactly the table's connections (no
    masked-out parameters) and Table I takes three convolutions.
    """

    def __init__(self, table: tuple[tuple[int, ...], ...], kernel: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        start = 0
        while start < len(table):
            end = start
            while end < len(table) and len(table[end]) == len(table[start]):
                end += 1
            rows = table[start:end]
            index = torch.tensor([i for row in rows for i in row], dtype=torch.long)
            # Derived from the table, so kept out of the state dict.
            self.register_buffer(f"index{len(self.convs)}", index, persistent=False)
            self.convs.append(nn.Conv2d(len(index), len(rows), kernel, groups=len(rows)))
            start = end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [conv(x[:, getattr(self, f"index{i}")]) for i, conv in enumerate(self.convs)]
        return torch.cat(outputs, dim=1)


@lru_cache(maxsize=None)
def _paley_rows(q: int) -> tuple[tuple[int, ...], ...]:
    squares = {(i * i) % q for i in range(1, q)}
    chi = [0] + [1 if a in squares else -1 for a in range(1, q)]  # Legendre symbol of a mod q
    s = [(0,) + (1,) * q] + [(-1,) + tuple(chi[(j - i) % q] for j in range(q)) for i in range(q)]
    return tuple(tuple(v + (r == c) for c, v in enumerate(row)) for r, row in enumerate(s))


def paley_hadamard(q: int = 83) -> torch.Tensor:
    """Paley's construction I: a (q+1)x(q+1) Hadamard matrix for a prime q = 3 (mod 4).

    H = I + S, where S has a first row of +1s after a 0, a first column of -1s below it,
    and elsewhere the Legendre symbol of (j - i) mod q (0 on the diagonal).
    """
    return torch.tensor(_paley_rows(q), dtype=torch.float32)


def rbf_codes(num_classes: int, dim: int = F6_UNITS) -> torch.Tensor:
    """Fixed +1/-1 parameter vectors for the RBF units, the same on every call.

    Up to 84 classes: rows of the 84x84 Hadamard matrix (pairwise orthogonal); up to
    168 their negations too; beyond that random signs from a fixed seed.
    """
    codes = paley_hadamard() if dim == F6_UNITS else torch.empty(0, dim)
    codes = torch.cat([codes, -codes])
    if num_classes > len(codes):
        generator = torch.Generator().manual_seed(1998)
        extra = torch.randint(0, 2, (num_classes - len(codes), dim), generator=generator) * 2.0 - 1.0
        codes = torch.cat([codes, extra])
    return codes[:num_classes].clone()


class EuclideanRBF(nn.Module):
    """Output unit k: -||x - c_k||^2 with fixed codes c_k (negated so they act as logits)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("centres", rbf_codes(num_classes, in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -(x.unsqueeze(1) - self.centres).pow(2).sum(dim=-1)


class LeNet5(nn.Module):
    """C1 -> S2 -> C3 -> S4 -> C5 -> F6 -> output, each layer with its activation."""

    def __init__(self, spec: LeNetSpec = SPECS["lenet5"], num_classes: int = 10,
                 in_chans: int = 1, init_weights: bool = True) -> None:
        super().__init__()
        self.spec = spec
        act = ScaledTanh if spec.scaled_tanh else nn.ReLU
        pool = Subsampling if spec.trainable_subsampling else (lambda maps: nn.MaxPool2d(2))
        c3 = PartialConv(spec.c3_table, 5) if spec.c3_table != C3_FULL else nn.Conv2d(6, 16, 5)

        self.c1 = nn.Sequential(nn.Conv2d(in_chans, 6, 5, padding=spec.c1_padding), act())
        self.s2 = nn.Sequential(pool(6), act()) if spec.trainable_subsampling else pool(6)
        self.c3 = nn.Sequential(c3, act())
        self.s4 = nn.Sequential(pool(16), act()) if spec.trainable_subsampling else pool(16)
        # The identity at the native size (S4's maps are 5x5 there); other sizes then run.
        self.resize = nn.AdaptiveAvgPool2d(5) if spec.resize_to_5x5 else nn.Identity()
        self.c5 = nn.Sequential(nn.Conv2d(16, 120, 5), act())
        self.f6 = nn.Sequential(nn.Linear(120, F6_UNITS), act())
        output = EuclideanRBF if spec.rbf_output else nn.Linear
        self.output = output(F6_UNITS, num_classes)
        if init_weights and spec.scaled_tanh:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        # Appendix A: uniform in +-2.4/F, F the fan-in of the unit (biases included, as
        # the paper treats them as weights). The modern form keeps PyTorch's defaults.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                bound = 2.4 / module.weight[0].numel()
            elif isinstance(module, Subsampling):
                bound = 2.4 / module.window**2
            else:
                continue
            nn.init.uniform_(module.weight, -bound, bound)
            nn.init.uniform_(module.bias, -bound, bound)

    @property
    def stem(self) -> nn.Conv2d:
        return self.c1[0]

    @property
    def head(self) -> nn.Module:
        return self.output

    @property
    def aux_outputs(self) -> dict[str, float]:
        return {}

    def head_modules(self) -> list[nn.Module]:
        """F6 and the output layer read C5's features (protocol: what ``--freeze features``
        trains; the paper's RBF output has no trainable parameters of its own)."""
        return [self.f6, self.output]

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """The paper's layers in order; each module's output is that layer's (squashed) maps."""
        return [("C1", self.c1), ("S2", self.s2), ("C3", self.c3), ("S4", self.s4),
                ("C5", self.c5), ("F6", self.f6)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c1(x)  # N x 6 x 28 x 28
        x = self.s2(x)  # N x 6 x 14 x 14
        x = self.c3(x)  # N x 16 x 10 x 10
        x = self.s4(x)  # N x 16 x 5 x 5
        return self.c5(self.resize(x))  # N x 120 x 1 x 1

    def penultimate_features(self, x: torch.Tensor) -> torch.Tensor:
        """F6's 84 states, what the output layer reads."""
        return self.f6(torch.flatten(self.forward_features(x), 1))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.f6(torch.flatten(x, 1)))  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_lenet(variant: str, **kwargs) -> LeNet5:
    return LeNet5(SPECS[variant], **kwargs)


def lenet5_paper(num_classes: int = 10, in_chans: int = 1, **kwargs) -> LeNet5:
    return build_lenet("lenet5_paper", num_classes=num_classes, in_chans=in_chans, **kwargs)


def lenet5(num_classes: int = 10, in_chans: int = 1, **kwargs) -> LeNet5:
    return build_lenet("lenet5", num_classes=num_classes, in_chans=in_chans, **kwargs)


class LayerRow(NamedTuple):
    name: str
    params: int  # trainable parameters
    connections: int  # input-to-unit connections, biases counted as connections


def _connections_per_position(module: nn.Module) -> int:
    """Connections into all units at one output position (every map), biases included."""
    total = 0
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            # Each output unit has weight[j].numel() inputs plus a bias.
            total += layer.weight.numel() + (layer.bias.numel() if layer.bias is not None else 0)
        elif isinstance(layer, Subsampling):
            total += layer.weight.numel() * (layer.window**2 + 1)
    return total


def lenet5_paper_layer_table(num_classes: int = 10, in_chans: int = 1) -> list[LayerRow]:
    """Section II.B's per-layer figures, measured on a built ``lenet5_paper``.

    Trainable parameters are counted on the modules; connections are the output map
    size (traced at 32x32) times the connections into the units at one position. Weight
    sharing is why the two differ for the convolutional and subsampling layers.
    """
    model = lenet5_paper(num_classes=num_classes, in_chans=in_chans, init_weights=False)
    sizes: dict[str, int] = {}  # layer -> output positions per map (1 for F6)

    def record(name: str):
        return lambda _module, _inputs, out: sizes.update({name: out[0, 0].numel() if out.dim() == 4 else 1})

    hooks = [module.register_forward_hook(record(name)) for name, module in model.blocks()]
    side = NATIVE_INPUT_SIZE["lenet5_paper"]
    with torch.no_grad():
        model(torch.zeros(1, in_chans, side, side))
    for hook in hooks:
        hook.remove()
    return [
        LayerRow(name, sum(p.numel() for p in module.parameters() if p.requires_grad),
                 sizes[name] * _connections_per_position(module))
        for name, module in model.blocks()
    ]
