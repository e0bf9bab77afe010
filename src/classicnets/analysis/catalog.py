"""The table of registered models: name, family, paper configuration, size and cost.

Each model is built on the meta device (no memory, no initialisation cost) with
3 input channels and 1000 classes, as the papers report them, and measured with
:func:`~classicnets.analysis.summary.summarize`. Everything in the table but the measured
figures comes from the registry entry: the family, the paper configuration, and, for a
network that cannot take the table's input size (``lenet5_paper`` takes 32 px only), the
size its multiply-adds are measured at instead (its native size, shown beside them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UserError
from ..models import create_model, get_model_entry, list_models
from .summary import summarize
from .text_table import format_count, format_macs, render_markdown, render_table


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    paper_config: str
    params: int  # everything create_model builds, auxiliary heads included
    inference_params: int  # what the eval-mode forward uses
    macs: int  # one image, eval mode
    macs_input_size: int  # the side they are measured at: the table's, or the native one where that does not fit
    paper: str = ""
    year: int | None = None
    native_input_size: int | None = None
    min_input_size: int | None = None


def describe_models(pattern: str | None = None, input_size: int = 224) -> list[ModelInfo]:
    """One :class:`ModelInfo` per registered model matching the shell-style ``pattern``."""
    names = list_models(pattern)
    if not names:
        raise UserError(f"no model matches {pattern!r}; the models are: {', '.join(list_models())}.")
    return [_describe(name, input_size) for name in names]


def _describe(name: str, input_size: int) -> ModelInfo:
    entry = get_model_entry(name)
    with torch.device("meta"):
        model = create_model(name, num_classes=1000, in_chans=3)
    size = input_size if entry.size_fits(input_size) else entry.native_input_size
    summary = summarize(model, size, in_chans=3, batch_size=1, name=name, training_pass=False)
    return ModelInfo(name, entry.family, entry.paper_config, summary.total_params,
                     summary.inference_params, summary.macs, size, entry.paper, entry.year,
                     entry.native_input_size, entry.min_input_size)


def format_model_table(infos: list[ModelInfo], input_size: int = 224, markdown: bool = False) -> str:
    headers = ["model", "family", "paper config", "params", "inference params", f"MACs @{input_size}"]
    align = ["l", "l", "l", "r", "r", "r"]
    rows = [[i.name, i.family, i.paper_config, format_count(i.params), format_count(i.inference_params),
             format_macs(i.macs) + ("" if i.macs_input_size == input_size else f" @{i.macs_input_size}")]
            for i in infos]
    render = render_markdown if markdown else render_table
    return render(headers, rows, align)
