"""Classify image files with a trained network, the way the run saw its images.

Preprocessing comes from the run's metadata: the shorter side scaled to
``image_size`` and the centre square cut (what evaluation and the photo cache do),
grey conversion for 1-channel networks, then the run's mean and std. A file that
cannot be read becomes a :class:`Prediction` with an ``error``; the others go on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from ..data.image_io import BadImageError, is_image_file, load_rgb, resize_center_crop
from ..errors import UserError
from .cam import cam_layer, grad_cam, save_overlay
from .metrics import check_finite_outputs

LUMA = torch.tensor([0.299, 0.587, 0.114])


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, int, float]] = field(default_factory=list)  # (class name, index, probability)
    error: str | None = None
    cam: str | None = None  # the Grad-CAM overlay written for this image

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        record: dict[str, Any] = {"path": self.path, "predictions": [
            {"class": name, "index": index, "probability": probability} for name, index, probability in self.top]}
        if self.cam is not None:
            record["cam"] = self.cam
        return record

    def __str__(self) -> str:
        if self.error is not None:
            return f"{self.path}: error: {self.error}"
        guesses = ", ".join(f"{name} {probability:.1%}" for name, _, probability in self.top)
        return f"{self.path}: {guesses}" + (f"  [CAM {self.cam}]" if self.cam else "")


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given (whatever their extension), folders as their image files, recursively and sorted."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and is_image_file(p))
            if not found:
                raise UserError(f"folder {item} has no image files.")
            files += found
        else:
            files.append(item)  # a missing file is reported with the predictions
    return files


def preprocess(image: torch.Tensor, metadata: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 RGB ``[3, H, W]`` -> (normalised model input ``[1, C, S, S]``, uint8 view ``[C, S, S]``)."""
    view = resize_center_crop(image, int(metadata["image_size"]))
    if int(metadata["in_chans"]) == 1:
        grey = (view.float() * LUMA.view(3, 1, 1)).sum(0, keepdim=True)
        view = grey.round().clamp(0, 255).to(torch.uint8)
    mean = torch.tensor(metadata["mean"], dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(metadata["std"], dtype=torch.float32).view(-1, 1, 1)
    return ((view.float() / 255 - mean) / std)[None], view


def predict_images(model: nn.Module, metadata: Mapping[str, Any], paths: Sequence[Path], *, topk: int = 3,
                   cam_dir: Path | None = None, batch_size: int = 16,
                   device: torch.device | str = "cpu", weights: str | None = None) -> Iterator[Prediction]:
    """Top-``topk`` classes of every file, in order; with ``cam_dir`` also a Grad-CAM PNG each,
    named by :func:`cam_file_names`.

    ``model`` and ``metadata`` are what :func:`classicnets.engine.load_run` returns. Logits
    with NaN or inf stop it with a UserError naming ``weights`` and the image.
    """
    if topk < 1:
        raise UserError(f"topk must be at least 1, got {topk}.")
    model = model.to(device).eval()
    class_names = list(metadata["class_names"])
    topk = min(topk, len(class_names))
    cam_names = iter(cam_file_names(paths))
    if cam_dir is not None:  # every input is at the run's size, so one block serves them all
        size, channels = int(metadata["image_size"]), int(metadata["in_chans"])
        _, cam_block = cam_layer(model, torch.zeros(1, channels, size, size, device=device))
    for start in range(0, len(paths), batch_size):
        batch = [_read(path, metadata) for path in paths[start:start + batch_size]]
        readable = [item for item in batch if item[1] is not None]
        probabilities = iter(())
        if readable:
            inputs = torch.cat([x for _, x, _ in readable]).to(device)
            with torch.no_grad():
                logits = model(inputs).float()
            _check_finite_rows(logits, [path for path, _, _ in readable], weights)
            probabilities = iter(torch.softmax(logits, dim=1).cpu())
        for path, x, view in batch:
            cam_name = next(cam_names)
            if x is None:
                yield Prediction(str(path), error=view)
                continue
            values, indices = next(probabilities).topk(topk)
            top = [(class_names[i], i, float(p)) for p, i in zip(values.tolist(), indices.tolist())]
            prediction = Prediction(str(path), top)
            if cam_dir is not None:
                target = cam_dir / cam_name
                save_overlay(target, view, grad_cam(model, x.to(device), top[0][1], cam_block))
                prediction.cam = str(target)
            yield prediction


def _read(path: Path, metadata: Mapping[str, Any]) -> tuple[Path, torch.Tensor | None, Any]:
    """(path, model input, uint8 view), or (path, None, why it failed)."""
    if not path.exists():
        return path, None, "no such file"
    if path.is_dir():
        return path, None, "is a folder"
    try:
        x, view = preprocess(load_rgb(path), metadata)
    except BadImageError as error:
        return path, None, str(error)
    return path, x, view


def _check_finite_rows(logits: torch.Tensor, paths: Sequence[Path], weights: str | None) -> None:
    """Refuse NaN or inf logits, naming the first image that gave them."""
    bad = (~torch.isfinite(logits)).any(dim=1).nonzero().flatten()
    if bad.numel():
        check_finite_outputs(logits[bad[0]], weights, str(paths[int(bad[0])]))


def cam_file_names(paths: Sequence[Path]) -> list[str]:
    """The Grad-CAM file name of each input, in order: ``STEM_cam.png``, numbered when two
    inputs from different folders share a stem. Known before any work, so that the caller
    can check what they would replace."""
    used: set[str] = set()
    names = []
    for path in paths:
        name, counter = f"{path.stem}_cam.png", 2
        while name in used:
            name = f"{path.stem}_cam-{counter}.png"
            counter += 1
        used.add(name)
        names.append(name)
    return names
