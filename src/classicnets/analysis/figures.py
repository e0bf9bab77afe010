"""Shared plumbing for the analysis outputs: directories, saving figures atomically,
showing images.

Figures are drawn on matplotlib's ``Figure`` directly (Agg canvas, no pyplot), as the
training reports are, so no display and no global backend state is involved.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import torch

from ..files import atomic_write_bytes
from ..errors import UserError


def output_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) for results and check that files can be written in it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"output path {path} exists and is not a directory.") from None
    except OSError as error:
        raise UserError(f"cannot create output directory {path} ({error.strerror or error}).") from None
    probe = path / f".write-test-{os.getpid()}"
    try:  # fail now, not after minutes of computing
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write to output directory {path} ({error.strerror or error}).") from None
    return path


def output_file(path: str | Path) -> Path:
    """Check that a file can be written at ``path``: not a directory, its directory usable.

    Called before the work whose result goes there, so a bad ``--out`` costs nothing
    (the final rename onto a directory would fail only at the very end).
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"output path {path} is a directory; give a file name.")
    output_dir(path.parent)
    return path


def save_figure(figure, path: Path, dpi: int = 110) -> Path:
    """Render ``figure`` as PNG into ``path`` atomically (temporary file, then rename)."""
    path = output_file(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def denormalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised ``[N, C, H, W]`` back to [0, 1] pixels (clipped: resizing can overshoot)."""
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images * std_t + mean_t).clamp(0, 1)


def show_image(axes, image: torch.Tensor) -> None:
    """Draw one ``[C, H, W]`` image in [0, 1]: grey for one channel, RGB for three."""
    image = image.detach().float().cpu()
    if image.shape[0] == 1:
        axes.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        axes.imshow(image[:3].permute(1, 2, 0).numpy(), vmin=0, vmax=1)
    axes.set_xticks([])
    axes.set_yticks([])


def rescale_each(maps: torch.Tensor) -> torch.Tensor:
    """Stretch every map of ``[N, ...]`` to [0, 1] on its own (a constant map becomes 0)."""
    flat = maps.detach().float().flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = (flat.max(dim=1, keepdim=True).values - low).clamp(min=1e-12)
    return ((flat - low) / span).view_as(maps)


def grid_shape(count: int, max_columns: int) -> tuple[int, int]:
    """(rows, columns) of a grid holding ``count`` panels at most ``max_columns`` wide."""
    columns = max(1, min(count, max_columns))
    return max(1, -(-count // columns)), columns
