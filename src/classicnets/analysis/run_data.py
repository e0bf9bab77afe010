"""The images a finished run was validated or tested on, for evaluation and embeddings.

The split is rebuilt from the run's own ``config.yaml`` (dataset, data location, seed,
validation size, subset and, for photo datasets, the split manifest and whether bad
images were skipped), so ``val`` and ``test`` are exactly the run's. Images are
normalised with the run's mean and std, which is what the network was trained on, even
when another dataset is asked for. That dataset must have the run's classes, by name and
in order; mapping other names by position must be asked for.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch

from ..data import is_known_dataset, unused_settings
from ..errors import UserError

SPLITS = ("test", "val", "all")  # all: every image of the dataset (train, val and test parts)
SHOWN_CLASSES = 6  # class names a message lists before cutting the list short


@dataclass
class RunSplit:
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]]  # normalised as the run's network expects
    num_images: int  # what the batches yield (after any limit)
    dataset: str
    class_names: list[str]
    mean: list[float]  # the run's normalisation
    std: list[float]
    # Dataset class -> the run's class of the same index, when their names differ and the
    # caller asked for mapping by position; None when the names agree.
    class_mapping: dict[str, str] | None = None

    def mapping_note(self) -> str | None:
        """One line telling the reader that classes were matched by position, or None."""
        if self.class_mapping is None:
            return None
        pairs = ", ".join(f"{theirs} as {ours}" for theirs, ours in self.class_mapping.items())
        return f"note: classes mapped by position (--map-classes-by-position): {self.dataset}'s {pairs}."


def run_home(source: str | os.PathLike) -> Path:
    """The run directory of a run directory or of a weights file inside one (where outputs go)."""
    path = Path(source)
    return path if path.is_dir() else path.parent


def run_settings(run_dir: Path) -> dict[str, Any]:
    """The run's saved configuration as a dict, or {} when the run has no config.yaml."""
    from ..engine.config import config_from_dict, load_recipe

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return {}
    return config_from_dict(load_recipe(path), str(path)).to_dict()


def renormalize(images: torch.Tensor, from_mean: Sequence[float], from_std: Sequence[float],
                to_mean: Sequence[float], to_std: Sequence[float]) -> torch.Tensor:
    """Images normalised with one (mean, std) re-expressed in another, channel by channel."""
    def column(values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)

    return (images * column(from_std) + column(from_mean) - column(to_mean)) / column(to_std)


def _limited(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], limit: int | None,
             convert) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    seen = 0
    for images, labels in batches:
        if limit is not None:
            if seen >= limit:
                return
            images, labels = images[:limit - seen], labels[:limit - seen]
        seen += labels.numel()
        yield convert(images), labels


def _split_options(settings: Mapping[str, Any], own: bool) -> dict[str, Any]:
    """The run's split settings, for its own dataset only: without its manifest the default
    split comes back, whose test part can hold the run's training images; on another dataset
    the run's --subset or --val-size may not even fit."""
    if not own:  # another dataset: its own default split, whatever the run's sizes were
        return {}
    options = {"val_size": settings.get("val_size"), "subset": settings.get("subset"),
               "manifest": settings.get("manifest"), "skip_bad": settings.get("skip_bad", False)}
    known = settings.get("dataset") and is_known_dataset(settings["dataset"])
    ignored = set(unused_settings(settings["dataset"], options)) if known else set()
    return {name: value for name, value in options.items()  # what the run's dataset reads, as it ran
            if name not in ignored and (value is not None or name == "subset")}


def load_run_split(
    run_dir: str | os.PathLike,
    metadata: Mapping[str, Any],
    split: str,
    *,
    image_size: int,
    device: torch.device | str,
    batch_size: int = 128,
    dataset: str | None = None,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    map_classes_by_position: bool = False,
) -> RunSplit:
    """Batches of the run's ``split`` at ``image_size`` px on ``device`` (first ``limit`` images).

    A dataset whose class names differ from the run's is refused unless
    ``map_classes_by_position``; then :attr:`RunSplit.class_mapping` holds the pairs.
    """
    from ..data import build_data

    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    settings = run_settings(run_home(run_dir))
    name = dataset or settings.get("dataset") or metadata.get("dataset")
    if not name:
        raise UserError(f"{run_dir} does not say which dataset it was trained on; pass --dataset.")
    data = build_data(
        name,
        data_dir=data_dir if data_dir is not None else settings.get("data_dir"),
        image_size=image_size,
        batch_size=batch_size,
        eval_batch_size=batch_size,
        device=device,
        seed=settings.get("seed", 0),
        download=False,
        **_split_options(settings, own=dataset is None or dataset == settings.get("dataset")),
    )
    if data.num_classes != metadata["num_classes"]:
        raise UserError(f"dataset {name} has {data.num_classes} classes but the run's network predicts "
                        f"{metadata['num_classes']}.")
    if data.in_chans != metadata["in_chans"]:
        raise UserError(f"dataset {name} has {data.in_chans}-channel images but the run's network takes "
                        f"{metadata['in_chans']}.")
    run_classes = list(metadata.get("class_names") or data.class_names)
    mapping = class_mapping(run_classes, list(data.class_names), name, by_position=map_classes_by_position)
    mean, std = list(metadata["mean"]), list(metadata["std"])
    same = torch.allclose(torch.tensor(data.mean), torch.tensor(mean)) and torch.allclose(
        torch.tensor(data.std), torch.tensor(std))

    def convert(images: torch.Tensor) -> torch.Tensor:
        return images if same else renormalize(images, data.mean, data.std, mean, std)

    batchers = data.plain_batchers(split)
    total = sum(data.split_sizes.values()) if split == "all" else data.split_sizes[split]
    return RunSplit(
        batches=_RestartableBatches(batchers, limit, convert),
        num_images=total if limit is None else min(limit, total),
        dataset=name,
        class_names=run_classes,
        mean=mean,
        std=std,
        class_mapping=mapping,
    )


def class_mapping(run_classes: Sequence[str], data_classes: Sequence[str], dataset: str, *,
                  by_position: bool) -> dict[str, str] | None:
    """None when the dataset's classes are the run's; {dataset class: run class} when they
    differ and ``by_position``; else a UserError naming both lists. The counts are equal
    (checked before): only names and order can differ, and either would mislabel every score."""
    if list(run_classes) == list(data_classes):
        return None
    if by_position:
        return dict(zip(data_classes, run_classes))
    theirs, ours = short_list(data_classes), short_list(run_classes)
    if sorted(run_classes) == sorted(data_classes):
        problem = f"has the run's classes in another order, {theirs} against the run's {ours}"
    else:
        problem = f"has the classes {theirs} but the run was trained on {ours}"
    if max(len(run_classes), len(data_classes)) > SHOWN_CLASSES:  # the difference may be cut off
        first = next(i for i, (a, b) in enumerate(zip(run_classes, data_classes)) if a != b)
        problem += f" (first difference at class {first}: {data_classes[first]!r} vs {run_classes[first]!r})"
    raise UserError(f"dataset {dataset} {problem}; pass --map-classes-by-position to score its i-th class "
                    f"as the run's i-th anyway.")


def short_list(names: Sequence[str], shown: int = SHOWN_CLASSES) -> str:
    """``[a, b, c]``, or the first ``shown`` names and the count for a long list."""
    if len(names) <= shown:
        return "[" + ", ".join(names) + "]"
    return "[" + ", ".join(names[:shown]) + f", ... {len(names)} in all]"


class _RestartableBatches:
    """The batches of the batchers in turn; iterating starts over each time, as a batcher does."""

    def __init__(self, batchers: Sequence[Iterable], limit: int | None, convert) -> None:
        self.batchers, self.limit, self.convert = batchers, limit, convert

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return _limited(itertools.chain.from_iterable(self.batchers), self.limit, self.convert)
