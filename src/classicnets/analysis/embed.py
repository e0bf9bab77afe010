"""Penultimate-layer embeddings and their 2-D maps (PCA and t-SNE, scikit-learn).

Which layer is "penultimate" (the input of the last layer, what the classifier separates
linearly) each network declares (its ``penultimate_features``, see
:mod:`~classicnets.models.protocol`), for example:

* VGG: the 4096-d output of the second FC layer after its ReLU, i.e. ``classifier[:-1]``
  on the flattened 7x7-pooled features (dropout is off in eval mode).
* GoogLeNet: the 1024-d globally average-pooled output of inception 5b.
* ResNet, Inception v3: the globally pooled features; LeNet-5: F6's 84 states.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..files import atomic_write_bytes
from ..errors import UserError
from ..models import protocol
from .figures import output_dir, save_figure
from .metrics import check_finite_outputs

PROJECTIONS = ("pca", "tsne")
EMBEDDINGS_FILE = "embeddings.npz"


def penultimate_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The representation the final layer reads: ``[N, 4096]`` (VGG), ``[N, 1024]`` (GoogLeNet), ..."""
    if not protocol.is_protocol_model(model):
        raise TypeError(f"penultimate features need a network that declares them (such as a VGG or GoogLeNet), "
                        f"got {type(model).__name__}")
    return protocol.penultimate_features(model, images)


@dataclass
class Embeddings:
    features: np.ndarray  # [N, D] float32
    labels: np.ndarray  # [N] int64


@torch.no_grad()
def extract_embeddings(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], max_samples: int | None = None,
    *, weights: str | None = None, data: str = "this data",
) -> Embeddings:
    """Penultimate features of the first ``max_samples`` images (all when None), in eval mode.

    Features with NaN or inf stop it with a UserError naming ``weights`` and ``data``: PCA
    and t-SNE cannot place such points.
    """
    was_training = model.training
    model.eval()
    features, labels, count = [], [], 0
    try:
        for images, targets in batches:
            if max_samples is not None and count >= max_samples:
                break
            take = targets.numel() if max_samples is None else min(targets.numel(), max_samples - count)
            batch_features = penultimate_features(model, images[:take]).float()
            check_finite_outputs(batch_features, weights, data)
            features.append(batch_features.cpu())
            labels.append(targets[:take].cpu())
            count += take
    finally:
        model.train(was_training)
    if not features:
        raise ValueError("the split yielded no images")
    return Embeddings(torch.cat(features).numpy(), torch.cat(labels).numpy().astype(np.int64))


def save_embeddings(path: Path, embeddings: Embeddings, class_names: Sequence[str]) -> Path:
    """``.npz`` with ``features``, ``labels`` and ``class_names`` (written atomically; no pickles)."""
    buffer = io.BytesIO()
    np.savez(buffer, features=embeddings.features, labels=embeddings.labels,
             class_names=np.array(list(class_names), dtype=np.str_))
    path = Path(path)
    output_dir(path.parent)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_embeddings(path: Path) -> tuple[Embeddings, list[str]]:
    with np.load(path, allow_pickle=False) as data:
        return Embeddings(data["features"], data["labels"]), data["class_names"].tolist()


def project_2d(features: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """``[N, 2]`` coordinates. t-SNE first reduces to 50 dimensions with PCA (its usual
    preprocessing: it removes noise and makes the neighbour search cheap)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    if method not in PROJECTIONS:
        raise UserError(f"unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}.")
    n, dims = features.shape
    if n < 3:
        raise UserError(f"a 2-D map needs at least 3 images, got {n}.")
    features = features.astype(np.float64)
    # torch and scikit-learn each bring their own OpenMP runtime; once torch's thread pool
    # has run, the two pools spin against each other and t-SNE runs ~40x slower on a few
    # cores. One OpenMP thread for scikit-learn avoids that.
    with threadpool_limits(limits=1, user_api="openmp"):
        if method == "pca":
            return PCA(n_components=2, random_state=seed).fit_transform(features)
        reduced = PCA(n_components=min(50, n, dims), random_state=seed).fit_transform(features)
        # sklearn requires perplexity < n; 30 is its default for large sets.
        perplexity = float(min(30, max(1, (n - 1) // 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)


def plot_embedding(path: Path, points: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                   title: str) -> Path:
    """Scatter plot of 2-D points coloured by class, with a legend of class names."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 6.5), layout="constrained")
    axes = figure.subplots()
    palette = colormaps["tab10" if len(class_names) <= 10 else "tab20"]
    for index, name in enumerate(class_names):
        members = labels == index
        if members.any():
            axes.scatter(points[members, 0], points[members, 1], s=6, alpha=0.7,
                         color=palette(index % palette.N), label=name)
    axes.legend(markerscale=3, fontsize=8, loc="best")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title)
    return save_figure(figure, path)


def embedding_maps(out_dir: Path, embeddings: Embeddings, class_names: Sequence[str], title: str,
                   methods: Sequence[str] = PROJECTIONS, seed: int = 0) -> dict[str, Path]:
    """Draw one scatter plot per projection method into ``out_dir``: ``{method}.png``."""
    written = {}
    for method in methods:
        points = project_2d(embeddings.features, method, seed)
        label = {"pca": "PCA", "tsne": "t-SNE"}[method]
        written[method] = plot_embedding(Path(out_dir) / f"{method}.png", points, embeddings.labels,
                                         class_names, f"{title}: {label}")
    return written
