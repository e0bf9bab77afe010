"""Weight porting between torchvision and classicnets.

Which of our models take torchvision's ImageNet weights is declared by their registry
entries (``torchvision_weights``, the weight enum's name): VGG 11/13/16/19 with and without
batch norm, ``googlenet_tv``, ``alexnet``, ``resnet18`` ... ``resnet152`` and
``inception_v3``. Most keep torchvision's module names, so keys map one to one; our
``googlenet_tv`` names its layers after the paper, so its entry carries a small rename
(:data:`GOOGLENET_TV_NAMES`, from :data:`GOOGLENET_TV_TOP_LEVEL` and
:data:`GOOGLENET_TV_BRANCHES`). Where a tensor is adapted (the first convolution, the class
layers) is asked of the model (:mod:`~classicnets.models.protocol`), never of its family.
Every conversion is checked against the target model: exactly the same keys, exactly the
same shapes, or a :class:`~classicnets.errors.UserError` naming the misfits.

:func:`build_pretrained` (what ``create_model(name, pretrained="torchvision")`` calls)
downloads the weights, converts them and loads them into a fresh model. A different
number of classes keeps everything but the classifiers, which stay freshly initialised;
a different number of input channels adapts the first convolution (see
:func:`adapt_first_conv`). What happened to each tensor is recorded in a
:class:`PortReport`, read back with :func:`port_report`.

:func:`save_ported_weights` writes our state dict as safetensors with the metadata
:func:`load_ported_weights` needs to rebuild the model.

This is the one module of the package that imports ``torchvision.models``: it needs the
weight enums (URLs and hashes) and nothing else.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

import torch
from torch import nn

from ..errors import UserError, load_failure_reason, one_line
from ..files import atomic_write_bytes
from .protocol import aux_heads, class_layer_names, head_name, module_name, stem_name
from .registry import ModelEntry, create_model, get_model_entry, register_pretrained_source, registered_entries

# torchvision GoogLeNet name -> ours, one dotted segment at a time. The stem's 1x1
# reduce is torchvision's conv2 and its 3x3 conv is conv3; we name them as the paper's
# Table 1 row "3x3 reduce / 3x3". Inception branches are named by what they compute.
GOOGLENET_TV_TOP_LEVEL: dict[str, str] = {"conv2": "conv2_reduce", "conv3": "conv2"}
GOOGLENET_TV_BRANCHES: dict[str, str] = {
    "branch1": "branch1x1",
    "branch2": "branch3x3",
    "branch3": "branch5x5",
    "branch4": "branch_pool",
}
IMAGENET_CLASSES = 1000
RGB = 3

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class PortReport:
    """What :func:`port_torchvision_state_dict` did with each tensor of our model.

    ``loaded``: copied unchanged; ``adapted``: the first conv, rebuilt for another
    number of input channels; ``new``: classifiers left freshly initialised because the
    number of classes changed; ``dropped``: source tensors the model has no place for
    (the auxiliary heads when ``aux_logits=False``). ``model_kwargs`` are the builder
    settings besides ``num_classes``/``in_chans`` needed to rebuild the same model.
    """

    model: str
    num_classes: int
    in_chans: int
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    loaded: tuple[str, ...] = ()
    adapted: tuple[str, ...] = ()
    new: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()

    def summary(self) -> str:
        channels = f"{self.in_chans} input channel{'s' if self.in_chans != 1 else ''}"
        return (f"{self.model}: {self.num_classes} classes, {channels}; "
                f"{len(self.loaded)} tensors loaded, {len(self.adapted)} adapted, "
                f"{len(self.new)} new, {len(self.dropped)} dropped")


# ---------------------------------------------------------------------------------------
# Names: which models have torchvision weights, and how their keys translate.


def models_with_torchvision_weights() -> list[str]:
    """Our models that torchvision has weights for, in registration order."""
    return [entry.name for entry in registered_entries() if entry.torchvision_weights]


def torchvision_weights_name(name: str) -> str:
    """torchvision's weight enum entry for our model ``name``; UserError if there is none."""
    entry = get_model_entry(name)  # unknown names get the registry's "did you mean"
    if entry.torchvision_refusal:
        raise UserError(entry.torchvision_refusal)
    if not entry.torchvision_weights:
        raise UserError(
            f"torchvision has no weights for {entry.name}; "
            f"the models that have them are {', '.join(models_with_torchvision_weights())}."
        )
    return entry.torchvision_weights


def _rename_googlenet_key(key: str, top_level: Mapping[str, str], branches: Mapping[str, str]) -> str:
    parts = key.split(".")
    parts[0] = top_level.get(parts[0], parts[0])
    if parts[0].startswith("inception") and len(parts) > 1:
        parts[1] = branches.get(parts[1], parts[1])
    return ".".join(parts)


class GoogLeNetNames:
    """torchvision's GoogLeNet keys <-> ours (:data:`GOOGLENET_TV_TOP_LEVEL`, :data:`GOOGLENET_TV_BRANCHES`)."""

    def __init__(self) -> None:
        self._ours = (GOOGLENET_TV_TOP_LEVEL, GOOGLENET_TV_BRANCHES)
        self._theirs = tuple({ours: tv for tv, ours in table.items()} for table in self._ours)

    def to_ours(self, key: str) -> str:
        return _rename_googlenet_key(key, *self._ours)

    def to_torchvision(self, key: str) -> str:
        return _rename_googlenet_key(key, *self._theirs)


GOOGLENET_TV_NAMES = GoogLeNetNames()


def _rename(name: str, state_dict: Mapping[str, torch.Tensor], to_ours: bool) -> StateDict:
    names = get_model_entry(name).torchvision_names
    if names is None:  # the model keeps torchvision's module names
        return dict(state_dict)
    rename = names.to_ours if to_ours else names.to_torchvision
    return {rename(k): v for k, v in state_dict.items()}


def torchvision_to_ours(name: str, state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Rename a torchvision state dict for our model ``name`` and check that it fits.

    The number of classes, of input channels and (for GoogLeNet) the presence of the
    auxiliary heads are read from the state dict itself, so fine-tuned torchvision
    models convert too. Tensors are shared, not copied.
    """
    torchvision_weights_name(name)
    _check_is_state_dict(state_dict)
    ours = _rename(name, state_dict, to_ours=True)
    check_state_dict(name, ours)
    return ours


def ours_to_torchvision(name: str, state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The inverse of :func:`torchvision_to_ours`: checks our state dict, then renames it."""
    torchvision_weights_name(name)
    _check_is_state_dict(state_dict)
    check_state_dict(name, state_dict)
    return _rename(name, state_dict, to_ours=False)


# ---------------------------------------------------------------------------------------
# Verification: a converted state dict must cover exactly our model's keys and shapes.


@dataclass(frozen=True)
class PortKeys:
    """Where a model keeps what porting adapts, as its protocol declares it."""

    first_conv: str  # the stem's weight, adapted to other input channel counts
    head_weight: str  # the class layer's weight: its first dimension is the class count
    class_prefixes: tuple[str, ...]  # classifiers that stay freshly initialised for other classes
    aux_prefixes: tuple[str, ...]  # the auxiliary heads (built by default; ``aux_logits=False`` drops them)


def port_keys(entry: ModelEntry) -> PortKeys:
    with torch.device("meta"):  # names only
        model = entry.builder(init_weights=False)
    return PortKeys(
        first_conv=f"{stem_name(model)}.weight",
        head_weight=f"{head_name(model)}.weight",
        class_prefixes=tuple(f"{name}." for name in class_layer_names(model)),
        aux_prefixes=tuple(f"{module_name(model, head)}." for head in aux_heads(model).values()),
    )


def _source_settings(keys: PortKeys, state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """num_classes, in_chans (and aux_logits) as the state dict's shapes say."""
    head, first_conv = state_dict.get(keys.head_weight), state_dict.get(keys.first_conv)
    settings: dict[str, Any] = {
        "num_classes": head.shape[0] if head is not None and head.dim() == 2 else IMAGENET_CLASSES,
        "in_chans": first_conv.shape[1] if first_conv is not None and first_conv.dim() == 4 else RGB,
    }
    if keys.aux_prefixes:
        settings["aux_logits"] = any(k.startswith(keys.aux_prefixes) for k in state_dict)
    return settings


def expected_shapes(name: str, **model_kwargs: Any) -> dict[str, torch.Size]:
    """Every state-dict key of our model ``name`` and its shape (built on the meta device)."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = get_model_entry(name).builder(init_weights=False, **model_kwargs)
    return {k: v.shape for k, v in model.state_dict().items()}


def check_state_dict(name: str, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise UserError unless ``state_dict`` has exactly our model's keys, with equal shapes.

    The model is built with the number of classes, input channels and auxiliary heads
    that the state dict itself implies.
    """
    expected = expected_shapes(name, **_source_settings(port_keys(get_model_entry(name)), state_dict))
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f"{k} (got {list(state_dict[k].shape)}, expected {list(shape)})"
             for k, shape in expected.items() if k in state_dict and state_dict[k].shape != shape]
    problems = [f"{what} {_first_few(keys)}" for what, keys in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
    if problems:
        raise UserError(f"the state dict does not fit {name}: {'; '.join(problems)}.")


def _first_few(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return f"{shown} and {len(items) - limit} more" if len(items) > limit else shown


def _check_is_state_dict(state_dict: Any, what: str = "the source") -> None:
    if not isinstance(state_dict, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise UserError(f"{what} is not a state dict (a mapping of parameter names to tensors).")


# ---------------------------------------------------------------------------------------
# Building a model from torchvision weights.


def adapt_first_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """First-conv weights for ``in_chans`` input channels from RGB (or any) weights.

    Each new channel gets the sum of the source filters divided by ``in_chans``. With one
    channel that is the plain sum: a grey image is an RGB image with R = G = B, and on
    such input the RGB conv computes sum_c(w_c) * x, so the 1-channel model reproduces
    the pretrained activations exactly. With more channels it is the mean of the RGB
    filters replicated and scaled by 3 / in_chans, so input that is equal across
    channels still gives the pretrained activations.
    """
    return (weight.sum(dim=1, keepdim=True) / in_chans).repeat(1, in_chans, 1, 1)


def port_torchvision_state_dict(
    entry: ModelEntry | str,
    state_dict: Mapping[str, torch.Tensor],
    num_classes: int | None = None,
    in_chans: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Our model with a torchvision state dict's weights; see :func:`build_pretrained`.

    ``num_classes`` / ``in_chans`` default to the source's. For a model with auxiliary heads
    (``googlenet_tv``, ``inception_v3``), ``aux_logits`` defaults to whether the source has
    them; where the entry says torchvision's weights expect their input re-normalisation,
    ``transform_input`` defaults to ``in_chans == 3``.
    The result carries a :class:`PortReport` (read it with :func:`port_report`).
    """
    entry = get_model_entry(entry) if isinstance(entry, str) else entry
    source = torchvision_to_ours(entry.name, state_dict)
    keys = port_keys(entry)
    settings = _source_settings(keys, source)
    num_classes = settings["num_classes"] if num_classes is None else num_classes
    in_chans = settings["in_chans"] if in_chans is None else in_chans
    if num_classes < 1 or in_chans < 1:
        raise UserError(f"num_classes and in_chans must be at least 1, got {num_classes} and {in_chans}.")
    if "aux_logits" in settings:
        kwargs.setdefault("aux_logits", settings["aux_logits"])
    if entry.torchvision_transform_input:
        kwargs.setdefault("transform_input", in_chans == RGB)
        if kwargs["transform_input"] and in_chans != RGB:
            raise UserError(f"transform_input re-normalises RGB input and needs in_chans=3, got {in_chans}.")

    # Always initialise: classifiers that are not ported must start from a real init, not
    # from torch.empty's leftovers, so a caller's init_weights=False is ignored here.
    kwargs.pop("init_weights", None)
    model = entry.builder(num_classes=num_classes, in_chans=in_chans, **kwargs)
    target = model.state_dict()
    loaded, adapted, new = [], [], []
    for key, current in target.items():
        if key in source and source[key].shape == current.shape:
            target[key] = source[key]
            loaded.append(key)
        elif key == keys.first_conv and key in source:
            target[key] = adapt_first_conv(source[key], in_chans)
            adapted.append(key)
        elif key.startswith(keys.class_prefixes) or key not in source:
            new.append(key)  # a classifier for other classes, or an aux head the source lacks
        else:
            raise UserError(f"cannot port {key} into {entry.name}: shape {list(source[key].shape)} "
                            f"does not fit {list(current.shape)}.")
    model.load_state_dict(target)
    model.port_report = PortReport(
        model=entry.name, num_classes=num_classes, in_chans=in_chans, model_kwargs=kwargs,
        loaded=tuple(loaded), adapted=tuple(adapted), new=tuple(new),
        dropped=tuple(k for k in source if k not in target),
    )
    return model


def port_report(model: nn.Module) -> PortReport:
    """The :class:`PortReport` of a model built by :func:`build_pretrained` (or by
    :func:`port_torchvision_state_dict` / :func:`load_ported_weights`)."""
    report = getattr(model, "port_report", None)
    if not isinstance(report, PortReport):
        raise UserError("this model was not built from ported torchvision weights, so it has no port report.")
    return report


def download_torchvision_state_dict(name: str) -> StateDict:
    """torchvision's ImageNet state dict for our model ``name``, from torch.hub's cache.

    The first call downloads it into TORCH_HOME/hub/checkpoints and checks its hash;
    the file is read with ``weights_only=True``. Any failure becomes one UserError.
    """
    from torchvision.models import get_weight  # the weight enums: URL and hash

    weights = get_weight(torchvision_weights_name(name))
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)
    was_cached = cached.exists()
    try:
        return torch.hub.load_state_dict_from_url(weights.url, progress=True, check_hash=True,
                                                  weights_only=True)
    except Exception as error:
        # Downloading fails with URLError, timeouts, HTTP errors or torch.hub's hash
        # mismatch; reading a damaged cached file (never re-checked) fails in any way.
        reason = load_failure_reason(error) if was_cached else one_line(error)
        if was_cached:
            raise UserError(f"could not read torchvision's {name} ImageNet weights from {cached} ({reason}); "
                            f"delete the file so that it is downloaded again.") from None
        raise UserError(f"could not download torchvision's {name} ImageNet weights ({reason}); "
                        f"connect to the internet or place the file in {cached}.") from None


def build_pretrained(entry: ModelEntry, num_classes: int = IMAGENET_CLASSES, in_chans: int = RGB,
                     **kwargs: Any) -> nn.Module:
    """Our model ``entry`` with torchvision's ImageNet weights.

    With ``num_classes != 1000`` every tensor is loaded except the class layers (the
    model's ``head`` and the last layer of each auxiliary head), which stay freshly
    initialised. With ``in_chans != 3`` the first conv is adapted (:func:`adapt_first_conv`).
    ``googlenet_tv`` and ``inception_v3`` get ``transform_input=True`` for RGB input, as
    torchvision sets for these weights, and keep the auxiliary heads unless
    ``aux_logits=False`` (torchvision's GoogLeNet checkpoint carries them, but notes that
    they were never trained).
    ``port_report(model)`` tells which tensors were loaded, adapted or new.
    """
    torchvision_weights_name(entry.name)  # unsupported models fail before any download
    state_dict = download_torchvision_state_dict(entry.name)
    return port_torchvision_state_dict(entry, state_dict, num_classes=num_classes, in_chans=in_chans, **kwargs)


def load_torchvision_file(path: str | os.PathLike) -> StateDict:
    """A torchvision state dict saved with ``torch.save``, read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}.")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # arbitrary bytes make the unpickler fail in any way (KeyError, IndexError, ...)
        raise UserError(f"could not read {path} as a PyTorch state dict ({load_failure_reason(error)}).") from None
    _check_is_state_dict(state_dict, what=str(path))
    return state_dict


# ---------------------------------------------------------------------------------------
# Files: our state dict as safetensors, with what is needed to rebuild the model.


def check_weights_folder(path: Path) -> None:
    """:func:`save_ported_weights` creates no folders: the one ``path`` names must exist."""
    if not path.is_dir() and not path.parent.is_dir():
        raise UserError(f"the folder {path.parent} does not exist.")


def save_ported_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write a ported model's state dict to ``path`` (safetensors), atomically.

    Metadata (all strings, as safetensors requires): ``model``, ``num_classes``,
    ``in_chans``, ``source`` ("torchvision") and ``model_kwargs`` (JSON, e.g.
    ``{"aux_logits": true, "transform_input": true}`` for googlenet_tv).
    """
    from safetensors.torch import save

    report = port_report(model)
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name such as {path / report.model}.safetensors.")
    check_weights_folder(path)
    metadata = {"model": report.model, "num_classes": str(report.num_classes),
                "in_chans": str(report.in_chans), "source": "torchvision",
                "model_kwargs": json.dumps(report.model_kwargs, sort_keys=True)}
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))
    return path


def load_ported_weights(path: str | os.PathLike) -> nn.Module:
    """Rebuild the model saved by :func:`save_ported_weights` and load its weights."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}.")
    try:
        with safe_open(str(path), framework="pt") as handle:  # one pass: metadata and tensors
            metadata = handle.metadata() or {}
            state_dict = {name: handle.get_tensor(name) for name in handle.keys()}
    except (OSError, SafetensorError) as error:
        raise UserError(f"could not read {path} as safetensors ({one_line(error)}).") from None
    try:
        name, num_classes, in_chans = metadata["model"], int(metadata["num_classes"]), int(metadata["in_chans"])
        model_kwargs = json.loads(metadata.get("model_kwargs", "{}"))
    except (KeyError, ValueError):
        raise UserError(f"{path} has no classicnets model metadata (model, num_classes, in_chans).") from None
    model = create_model(name, num_classes=num_classes, in_chans=in_chans, **model_kwargs)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError:  # torch lists every misfit over many lines; name the first few
        expected = model.state_dict()
        misfits = sorted(set(expected) ^ set(state_dict)) + [
            k for k in expected if k in state_dict and expected[k].shape != state_dict[k].shape]
        raise UserError(f"{path} does not fit {name}: {_first_few(misfits)} differ.") from None
    model.port_report = PortReport(model=name, num_classes=num_classes, in_chans=in_chans,
                                   model_kwargs=model_kwargs, loaded=tuple(state_dict))
    return model


register_pretrained_source("torchvision", build_pretrained)
