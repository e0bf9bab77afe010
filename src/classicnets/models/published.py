"""Published ImageNet accuracy of the torchvision weights a registered model takes.

Part of the weight-porting bridge (see :mod:`.porting`): the accuracy is read from the
``meta`` of torchvision's weight enum, never typed in, and ``torchvision.models`` is
imported only when asked. Code outside ``models/`` asks here instead of importing it.
"""

from __future__ import annotations

from functools import lru_cache

from .registry import get_model_entry


def torchvision_weights_for(name: str) -> str | None:
    """The torchvision weight enum entry (e.g. ``"VGG16_Weights.IMAGENET1K_V1"``) whose
    weights port into our model ``name`` (the registry entry's ``torchvision_weights``), or
    None when torchvision has none for it. An unknown ``name`` raises UnknownModelError."""
    return getattr(get_model_entry(name), "torchvision_weights", None) or None


def torchvision_published_accuracy(name: str) -> tuple[float, str] | None:
    """``(ImageNet-1K top-1 in percent, source)`` that torchvision publishes for the weights
    of our model ``name``, or None when there are no such weights (LeNet, the papers'
    own variants). The source reads ``"torchvision weights VGG16_Weights.IMAGENET1K_V1 (meta)"``.
    """
    weights = torchvision_weights_for(name)
    return None if weights is None else _accuracy_of(weights)


@lru_cache(maxsize=None)
def _accuracy_of(weights: str) -> tuple[float, str] | None:
    from torchvision.models import get_weight  # the slow import, only when asked

    metrics = get_weight(weights).meta.get("_metrics", {}).get("ImageNet-1K", {})
    if "acc@1" not in metrics:
        return None
    return float(metrics["acc@1"]), f"torchvision weights {weights} (meta)"
