"""The training configuration: defaults < recipe (YAML) < command-line flags.

:class:`TrainConfig` is the single source of truth for a run. A recipe is a YAML
mapping whose keys are its field names; flags override the recipe; the effective
configuration is saved beside the results as ``config.yaml`` and is what
``--resume`` reads back.

Resuming (:func:`resume_config`) re-uses the saved configuration. Only settings that
do not change what the network learns may be given again with a new value
(:data:`RESUME_MUTABLE`: data location, device, compilation, loader workers), plus
``epochs``, which may only be raised: the schedule is then planned over the new total
from the step reached. Any other flag that disagrees with the saved value is refused.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import torch

from ..files import atomic_write_bytes
from ..data import AUGMENT_DEFAULTS, AUGMENT_KEYS, LOADERS, is_known_dataset, is_photo_dataset, unused_settings
from ..data.file_datasets import FOLDER_PREFIX
from ..data.photo_augment import PhotoAugmentConfig
from .. import device as devices
from ..device import DEVICES
from ..errors import UserError
from ..models.staged_init import INIT_MODES
from ..limits import MAX_BATCH_SIZE, MAX_IMAGE_SIZE, MAX_SEED

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("cosine", "onecycle", "step", "plateau")
# A switch the machine may decide: true, false, or "auto" (see TrainConfig.precision).
AutoSwitch = typing.Union[bool, typing.Literal["auto"]]
AUTO_SWITCH_WORDS = {"auto": "auto", "true": True, "on": True, "false": False, "off": False}
# torch.compile modes; the last three capture CUDA graphs or autotune kernels.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# What a photo dataset (cats-vs-dogs, CIFAR-10, STL-10, folder:PATH) trains with where neither
# a recipe nor a flag decides. TrainConfig's own defaults are the VGG paper's SGD at 0.01 for
# Fashion-MNIST; on photos from scratch they stayed near chance on a CPU, while these learnt
# (BENCHMARKS.md, "Photo defaults", has the measurements). The augmentation follows the
# image size: PhotoAugmentConfig.for_image_size.
PHOTO_DEFAULTS: dict[str, Any] = {
    "optimizer": "adamw",
    "lr": 2e-3,
    "weight_decay": 0.05,
    "scheduler": "onecycle",  # its rise over the first 30% of the steps is the warm-up
    "label_smoothing": 0.1,
}
# The photo lr of a network whose fully-connected layers read a window of its last feature map
# wider than 1x1 (its dense_head() is a FullyConnectedHead). Adam-type steps move every weight
# by about lr, so the first FC layer's output moves with its fan-in (25088 for VGG's 7x7 window;
# on small photos the 1x1 map is copied 49 times): VGG-11-BN stayed at chance with AdamW at
# 0.002 and 0.001 and learnt at 0.0002, or at 0.002 with a 1x1 window (BENCHMARKS.md, "Photo
# defaults").
PHOTO_FC_HEAD_LR = 2e-4
# Taken from PHOTO_DEFAULTS only with its optimizer: a rate chosen for AdamW is no rate for SGD,
# so another optimizer given keeps TrainConfig's lr and weight decay unless they are given too.
FOLLOW_OPTIMIZER = ("lr", "weight_decay")

# Settings that may change on --resume without changing what the network learns.
RESUME_MUTABLE = frozenset({"data_dir", "device", "compile", "compile_mode", "num_workers", "log_interval",
                            "dist_timeout_minutes", "tensorboard"})
# Settings that name files or folders; a run saves them absolute (TrainConfig.with_absolute_paths).
FILE_SETTINGS = ("data_dir", "manifest", "init_from")
PATH_SETTINGS = ("dataset", *FILE_SETTINGS)  # dataset as folder:PATH


@dataclass
class TrainConfig:
    """Every setting of a training run. Accuracies in files are fractions in [0, 1]."""

    # what to train, on what, and where results go
    model: str | None = None
    dataset: str = "fashion-mnist"
    data_dir: str | None = None  # None: env CLASSICNETS_DATA, else ./data
    out: str | None = None  # None: runs/<model>-<dataset>-<timestamp>
    model_kwargs: dict = field(default_factory=dict)  # passed to create_model, e.g. {aux_logits: false}

    # transfer: where the starting weights come from and what trains
    pretrained: str | None = None  # "torchvision": its ImageNet weights, where the network has them
    init_from: str | None = None  # a run directory or .safetensors file; every matching tensor is loaded
    init_mode: str | None = None  # "vgg-staged": the VGG paper's staged initialisation from init_from
    freeze: str | None = None  # "features": train the classifier head only
    backbone_lr: float | None = None  # lr of everything but the head (None: lr); scheduled like lr

    # data
    image_size: int = 28
    subset: int | None = None  # use only this many training images (a quick look)
    # Held out from the 60,000 training images, stratified (CIFAR-10/STL-10: at most a tenth);
    # None for datasets whose split comes with their files (see build_config).
    val_size: int | None = 6000
    augment: dict = field(default_factory=dict)  # the dataset's augmentation options; unset keys keep defaults
    manifest: str | None = None  # photo datasets: a split CSV from `classicnets split`
    skip_bad: bool = False  # photo datasets: leave unreadable images out instead of stopping
    mean: list | None = None  # per-channel normalisation; None: computed on the training split
    std: list | None = None
    loader: str = "auto"  # "device": whole split resident on the device; "dataloader": torch DataLoader
    num_workers: int = 2

    # optimisation
    epochs: int = 10
    batch_size: int = 128  # per rank under torchrun: global batch = batch_size x world size x grad_accum_steps
    grad_accum_steps: int = 1  # micro-batches summed into one optimizer step (lr is never auto-scaled)
    eval_batch_size: int | None = None  # None: twice the batch size
    optimizer: str = "sgd"
    # The VGG paper's rate. 0.05 blew up VGG's head at small sizes (at 28 px its 1x1 map is
    # copied 49 times into the first FC layer, which multiplies that layer's steps by 49).
    lr: float = 0.01
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = True
    betas: list = field(default_factory=lambda: [0.9, 0.999])  # Adam / AdamW
    weight_decay: float = 5e-4  # never applied to biases and norm weights (1-D parameters)
    label_smoothing: float = 0.0
    aux_weight: float | None = None  # auxiliary losses; None: the model's own (GoogLeNet 0.3, Inception v3 0.4)
    grad_clip: float | None = None  # max global L2 norm of the gradients
    ema_decay: float | None = None  # weight EMA (None or 0: off); validation, selection and test then use it

    # learning-rate schedule (per step, after a linear warm-up)
    scheduler: str = "cosine"
    warmup_epochs: float = 0.0  # capped at the run's length; onecycle with 0 rises over the first 30%
    warmup_start_factor: float = 0.04  # warm-up starts at lr * this (one-cycle's lr / 25)
    min_lr_factor: float = 0.0  # cosine and onecycle end at lr * this
    step_epochs: int = 30  # "step": multiply by step_gamma every step_epochs epochs
    step_gamma: float = 0.1
    plateau_patience: int = 2  # "plateau": epochs without a better val accuracy before dividing
    plateau_factor: float = 0.1  # the VGG paper divides by 10 ...
    plateau_max_reductions: int = 3  # ... three times

    # evaluation
    tta_flip: bool = False  # average the logits of the image and its mirror (val and test)

    # execution
    seed: int = 0
    device: str = "auto"
    bf16: bool = True  # bf16 autocast on CUDA
    # bf16 autocast on the CPU: "auto" turns it on only where the CPU computes bf16 natively
    # (AVX-512 BF16, AMX, ARM BF16), where it trains faster; elsewhere bf16 is emulated and
    # several times slower than float32 (BENCHMARKS.md, "bf16 on the CPU").
    cpu_bf16: AutoSwitch = "auto"
    channels_last: bool = True  # NHWC memory layout for convolutions, on CUDA (cuDNN) and the CPU (oneDNN)
    compile: bool = False
    compile_mode: str = "default"
    deterministic: bool = False
    log_interval: int = 20  # steps between progress updates (each one synchronises the GPU)
    tensorboard: bool = False  # event files in RUN_DIR/tensorboard (train/val curves, lr, hyperparameters)
    sync_bn: bool = False  # torchrun: batch-norm statistics over the global batch (SyncBatchNorm)
    dist_timeout_minutes: float = 10.0  # torchrun: a collective waiting longer than this fails the job

    def channels_last_on(self, device: "torch.device") -> bool:
        """Whether this run lays images and convolutions out NHWC on ``device`` (not on MPS)."""
        return self.channels_last and devices.channels_last_helps(device)

    def bf16_on(self, device_type: str) -> bool:
        """Whether this run computes under bf16 autocast on a device of this type."""
        return self.precision(device_type).bf16

    def precision(self, device_type: str) -> "Precision":
        """The precision rule: bf16 autocast on CUDA when ``bf16``; on the CPU when ``cpu_bf16``
        is true, or "auto" and the CPU computes bf16 natively; float32 elsewhere (MPS)."""
        if device_type == "cuda":
            return Precision(self.bf16, f"bf16 {str(self.bf16).lower()}")
        if device_type != "cpu":
            return Precision(False, f"bf16 autocast is used on CUDA and CPUs only, not on {device_type}")
        support = devices.cpu_bf16_support()
        if self.cpu_bf16 == "auto":
            return Precision(support.native, f"cpu_bf16 auto: {support.reason}"
                                             + ("" if support.native else ", where float32 is faster"))
        if self.cpu_bf16 and not support.native:
            return Precision(True, f"cpu_bf16 true, but {support.reason}: expect steps several times slower "
                                   f"than in float32 (cpu_bf16 auto would choose float32 here)", slower=True)
        return Precision(bool(self.cpu_bf16), f"cpu_bf16 {str(self.cpu_bf16).lower()}")

    def validate(self) -> "TrainConfig":
        """Coerce every field to its type; raise :class:`UserError` on the first setting that cannot work."""
        _refuse_empty_values(dataclasses.asdict(self), "config")
        for name, kind in config_fields().items():
            setattr(self, name, _coerce(name, getattr(self, name), kind, "config"))
        if not self.model:
            raise UserError("no model given; pass --model NAME or a --recipe that sets model.")
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("scheduler", self.scheduler, SCHEDULERS)
        _check_choice("device", self.device, DEVICES)
        _check_choice("loader", self.loader, LOADERS)
        _check_choice("compile_mode", self.compile_mode, COMPILE_MODES)
        for name in ("epochs", "batch_size", "image_size", "step_epochs",
                     "plateau_patience", "log_interval", "grad_accum_steps"):
            _check_at_least(name, getattr(self, name), 1)
        for name in ("subset", "eval_batch_size", "val_size"):
            if getattr(self, name) is not None:
                _check_at_least(name, getattr(self, name), 1)
        for name in ("num_workers", "plateau_max_reductions", "seed", "weight_decay",
                     "momentum", "warmup_epochs", "min_lr_factor"):
            _check_at_least(name, getattr(self, name), 0)
        if self.aux_weight is not None:
            _check_at_least("aux_weight", self.aux_weight, 0)
        _check_positive("lr", self.lr)
        _check_positive("dist_timeout_minutes", self.dist_timeout_minutes)
        # Ceilings where the libraries below would otherwise fail with a traceback.
        _check_at_most("seed", self.seed, MAX_SEED)
        _check_at_most("image_size", self.image_size, MAX_IMAGE_SIZE)
        for name in ("batch_size", "eval_batch_size"):
            if getattr(self, name) is not None:
                _check_at_most(name, getattr(self, name), MAX_BATCH_SIZE)
        _check_at_most("warmup_epochs", self.warmup_epochs, 1_000_000)  # turned into a step count
        _check_at_most("dist_timeout_minutes", self.dist_timeout_minutes, 10_000)  # a week; must fit a C int of ms
        if self.grad_clip is not None:
            _check_positive("grad_clip", self.grad_clip)
        for name in ("label_smoothing", "warmup_start_factor", "step_gamma", "plateau_factor"):
            _check_fraction(name, getattr(self, name), allow_zero=name == "label_smoothing")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise UserError(f"ema_decay must be in [0, 1) (0 turns the EMA off), got {self.ema_decay}.")
        self.betas = [_coerce("betas", beta, float, "config") for beta in self.betas]
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise UserError(f"betas must be two numbers in [0, 1), got {self.betas}.")
        self.augment = validate_augment(self.augment, self.dataset)
        self._validate_transfer()
        for name in ("mean", "std"):
            if getattr(self, name) is not None:
                setattr(self, name, [_coerce(name, v, float, "config") for v in getattr(self, name)])
        if (self.mean is None) != (self.std is None) or (self.mean and len(self.mean) != len(self.std)):
            raise UserError("mean and std must be given together, one number per channel each.")
        if self.std is not None and not all(v > 0 for v in self.std):
            raise UserError(f"std must be positive per channel, got {self.std}.")
        return self

    def with_absolute_paths(self) -> "TrainConfig":
        """Path settings made absolute, so the saved config means the same from any working
        directory: ``--resume``, ``evaluate`` and ``embed`` read it later, perhaps from elsewhere."""
        for name, value in absolute_path_settings({n: getattr(self, n) for n in PATH_SETTINGS}).items():
            setattr(self, name, value)
        return self

    def _validate_transfer(self) -> None:
        if self.pretrained is not None:
            _check_choice("pretrained", self.pretrained, ("torchvision",))
        if self.freeze is not None:
            _check_choice("freeze", self.freeze, ("features",))
        if self.pretrained and self.init_from:
            raise UserError("pretrained and init_from both choose the starting weights; give only one.")
        if self.init_mode is not None:
            _check_choice("init_mode", self.init_mode, INIT_MODES)
            if not self.init_from:
                raise UserError(f"init_mode {self.init_mode} copies layers from a trained run; give it with "
                                f"--init-from RUN_DIR.")
        if self.backbone_lr is not None:
            _check_at_least("backbone_lr", self.backbone_lr, 0)

    @property
    def effective_eval_batch_size(self) -> int:
        return self.eval_batch_size or 2 * self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        atomic_write_bytes(Path(path), text.encode())


@dataclass(frozen=True)
class Precision:
    """What a run computes in on one device, and why (the run's header line says it)."""

    bf16: bool
    reason: str
    slower: bool = False  # bf16 asked for on a CPU that only emulates it

    def describe(self) -> str:
        return f"{'bf16 autocast' if self.bf16 else 'float32'} ({self.reason})"


def absolute_path_settings(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the paths among them made absolute (``folder:PATH`` datasets included)."""
    def absolute(path: str) -> str:
        return str(Path(path).expanduser().absolute())

    values = dict(values)
    for name in FILE_SETTINGS:
        if isinstance(values.get(name), str) and values[name]:
            values[name] = absolute(values[name])
    dataset = values.get("dataset")
    if isinstance(dataset, str) and dataset.startswith(FOLDER_PREFIX) and len(dataset) > len(FOLDER_PREFIX):
        values["dataset"] = FOLDER_PREFIX + absolute(dataset[len(FOLDER_PREFIX):])
    return values


def config_fields() -> dict[str, type]:
    """Field name -> the plain type a value must have (Optional unwrapped)."""
    hints = typing.get_type_hints(TrainConfig)
    kinds = {}
    for f in dataclasses.fields(TrainConfig):
        if hints[f.name] == AutoSwitch:
            kinds[f.name] = AutoSwitch
            continue
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
        kinds[f.name] = args[0] if args else hints[f.name]
    return kinds


def optional_fields() -> set[str]:
    """Fields whose type admits None (YAML ``null`` or an empty value)."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name for f in dataclasses.fields(TrainConfig) if type(None) in typing.get_args(hints[f.name])}


def config_from_dict(values: dict[str, Any], source: str) -> TrainConfig:
    """Build a config from a mapping (a recipe, saved config, or flags), checking keys and types."""
    kinds = config_fields()
    unknown = sorted(set(values) - set(kinds))
    if unknown:
        raise UserError(f"{source} has unknown setting(s) {', '.join(unknown)}; "
                        f"known settings: {', '.join(kinds)}.")
    _refuse_empty_values(values, source)
    config = TrainConfig()
    for name, value in values.items():
        setattr(config, name, _coerce(name, value, kinds[name], source))
    return config


def _refuse_empty_values(values: dict[str, Any], source: str) -> None:
    """``epochs:`` with nothing after it reads as None in YAML; only optional settings may be empty."""
    empty = sorted(name for name, value in values.items() if value is None and name not in optional_fields())
    if empty:
        defaults = TrainConfig()
        shown = ", ".join(f"{name} (default {getattr(defaults, name)!r})" for name in empty)
        raise UserError(f"{source}: {shown} must have a value; give one or delete the line to keep the default.")
    blank = sorted(name for name, value in values.items() if isinstance(value, str) and not value.strip())
    if blank:  # init_from: "" would otherwise read as "not given" and train from scratch
        raise UserError(f"{source}: {', '.join(blank)} must not be an empty text; give a value or delete "
                        f"the line to keep the default.")


def load_recipe(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"recipe {path} is a folder; give a .yaml file (e.g. recipes/fashion_mnist/vgg16.yaml).")
    if not path.is_file():
        raise UserError(f"recipe {path} does not exist.")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise UserError(f"recipe {path} is not a text file; give a YAML recipe.") from None
    except yaml.YAMLError as error:
        raise UserError(f"recipe {path} is not valid YAML ({_first_line(error)}).") from None
    if not isinstance(values, dict):
        raise UserError(f"recipe {path} must be a mapping of setting: value.")
    return values


def build_config(recipe: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Defaults, then the recipe, then the flags (``overrides`` holds only flags given).

    A setting given for a dataset that ignores it (``val_size`` for a photo folder, whose
    split comes with its files) is refused, and such a setting left at its default is saved
    as None: the saved configuration describes what ran."""
    values = load_recipe(recipe) if recipe is not None else {}
    values = {**values, **overrides}
    values = with_dataset_kind_defaults(values)
    source = f"recipe {recipe}" if recipe else "the flags"
    config = config_from_dict(values, source).validate()
    if not is_known_dataset(config.dataset):
        return config  # train() refuses an unknown dataset, naming it
    ignored = unused_settings(config.dataset, values)
    if ignored:
        raise UserError(f"{source}: {', '.join(ignored)} do{'es' if len(ignored) == 1 else ''} not apply to "
                        f"{config.dataset}, which would ignore {'it' if len(ignored) == 1 else 'them'}; "
                        f"remove {'it' if len(ignored) == 1 else 'them'} (a photo dataset's split comes with its "
                        f"files or from `classicnets split`).")
    if unused_settings(config.dataset, {**values, "val_size": config.val_size}):
        config.val_size = None  # the default, which this dataset does not read
    return config


def with_dataset_kind_defaults(given: dict[str, Any]) -> dict[str, Any]:
    """``given`` (recipe and flags) completed with the defaults of its dataset's kind.

    Photo datasets take :data:`PHOTO_DEFAULTS` where unset (lr and weight decay only with its
    optimizer) and the augmentation of their image size under any augmentation options given;
    other datasets keep TrainConfig's defaults."""
    dataset = given.get("dataset", TrainConfig.dataset)
    if not isinstance(dataset, str) or not is_known_dataset(dataset) or not is_photo_dataset(dataset):
        return given
    other_optimizer = given.get("optimizer", PHOTO_DEFAULTS["optimizer"]) != PHOTO_DEFAULTS["optimizer"]
    completed = {name: value for name, value in PHOTO_DEFAULTS.items()
                 if not (name in FOLLOW_OPTIMIZER and other_optimizer)} | given
    if "lr" not in given and not other_optimizer and has_fc_layers_over_a_window(given):
        completed["lr"] = PHOTO_FC_HEAD_LR
    image_size = given.get("image_size", TrainConfig.image_size)
    augment = given.get("augment", {})
    if isinstance(image_size, int) and not isinstance(image_size, bool) and image_size >= 1 \
            and isinstance(augment, dict):  # anything else is refused with its own message later
        completed["augment"] = PhotoAugmentConfig.for_image_size(image_size) | augment
    return completed


def has_fc_layers_over_a_window(given: dict[str, Any]) -> bool:
    """Whether the model ``given`` names reads a window of its last map wider than 1x1 with
    fully-connected layers, as the model itself answers (built on the meta device: no memory,
    no weights). False when it cannot be built: validation names the problem later."""
    import torch

    from ..models import create_model
    from ..models.protocol import FullyConnectedHead, dense_head

    name, kwargs = given.get("model"), given.get("model_kwargs") or {}
    if not isinstance(name, str) or not isinstance(kwargs, dict):
        return False
    try:
        with torch.device("meta"):
            model = create_model(name, **kwargs)
    except (UserError, TypeError, ValueError, KeyError):
        return False
    head = dense_head(model)
    return isinstance(head, FullyConnectedHead) and head.window > 1


def setting_text(value: Any) -> str:
    """A setting's value as ``--help`` shows it: floats in their shortest form (0.002, 0.05)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def photo_defaults_text() -> str:
    """PHOTO_DEFAULTS and the augmentation by size, as ``--help`` shows them."""
    settings = ", ".join(f"{name} {setting_text(value)}" for name, value in PHOTO_DEFAULTS.items())
    return (f"{settings} (lr {setting_text(PHOTO_FC_HEAD_LR)} for a network whose fully-connected layers "
            f"read a window of its last feature map); augmentation by image size: {PhotoAugmentConfig.size_rule()}")


def resume_config(run_dir: str | Path, overrides: dict[str, Any]) -> TrainConfig:
    """The saved configuration of ``run_dir`` with the few overrides resuming allows."""
    run_dir = Path(run_dir)
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise UserError(f"cannot resume: {saved_path} does not exist (is {run_dir} a run directory?).")
    saved = config_from_dict(load_recipe(saved_path), str(saved_path))
    overrides = absolute_path_settings(overrides)  # compared with the saved, absolute paths
    out = overrides.pop("out", None)
    if out is not None and Path(out).resolve() != run_dir.resolve():
        raise UserError(f"--out {out} conflicts with --resume {run_dir}; a resumed run stays in its directory.")
    for name, value in overrides.items():
        current = getattr(saved, name)
        if name == "epochs":
            if value < saved.epochs:
                raise UserError(f"--epochs {value} is below the run's planned {saved.epochs}; "
                                f"a resumed run may only raise --epochs.")
        elif name not in RESUME_MUTABLE and _coerce(name, value, config_fields()[name], "flags") != current:
            raise UserError(
                f"--{name.replace('_', '-')} {value} conflicts with the run's saved {name} ({current}); "
                f"with --resume only --epochs (raised), --data-dir, --device, --compile and --quiet may change.")
        setattr(saved, name, value)
    saved.out = str(run_dir)
    return saved.validate()


def validate_augment(augment: Any, dataset: str = "fashion-mnist") -> dict[str, Any]:
    """The complete augmentation options of ``dataset``: photos take random-resized-crop and
    colour jitter (:class:`~classicnets.data.photo_augment.PhotoAugmentConfig`), Fashion-MNIST
    a padded crop, flip and erasing."""
    if is_photo_dataset(dataset):
        return PhotoAugmentConfig.from_dict(augment).to_dict()
    if not isinstance(augment, dict):
        raise UserError(f"augment must be a mapping with keys {', '.join(AUGMENT_KEYS)}, got {augment!r}.")
    unknown = sorted(set(augment) - set(AUGMENT_KEYS))
    if unknown:
        raise UserError(f"augment has unknown key(s) {', '.join(unknown)}; known: {', '.join(AUGMENT_KEYS)}.")
    merged = {**AUGMENT_DEFAULTS, **augment}  # unset keys keep defaults
    checked = {
        "crop_padding": _coerce("augment.crop_padding", merged["crop_padding"], int, "augment"),
        "hflip": _coerce("augment.hflip", merged["hflip"], bool, "augment"),
        "erasing": _coerce("augment.erasing", merged["erasing"], float, "augment"),
    }
    _check_at_least("augment.crop_padding", checked["crop_padding"], 0)
    _check_fraction("augment.erasing", checked["erasing"], allow_zero=True)
    return checked


def _coerce(name: str, value: Any, kind: type, source: str) -> Any:
    """YAML and argparse values to the field's type; ``None`` stays for optional fields."""
    if value is None:
        return None
    if kind == AutoSwitch:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in AUTO_SWITCH_WORDS:
            return AUTO_SWITCH_WORDS[value.strip().lower()]
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        # PyYAML reads "1e-3" (no dot) as a string, so numeric strings are accepted here.
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if math.isfinite(number):
            return number
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind in (dict, list):
        if isinstance(value, kind):
            return value
    raise UserError(f"{source}: {name} must be {_type_words(kind)}, got {value!r}.")


def _type_words(kind: type) -> str:
    if kind == AutoSwitch:
        return "true, false or auto"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string",
            dict: "a mapping", list: "a list"}.get(kind, kind.__name__)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}.")


def _check_at_least(name: str, value: float, low: float) -> None:
    if value < low:
        words = "a positive integer" if low == 1 else "zero or more"
        raise UserError(f"{name} must be {words}, got {value}.")


def _check_at_most(name: str, value: float, high: float) -> None:
    if value > high:
        raise UserError(f"{name} must be at most {high:,}, got {value}.")


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise UserError(f"{name} must be a positive number, got {value}.")


def _check_fraction(name: str, value: float, allow_zero: bool) -> None:
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise UserError(f"{name} must be in {interval}, got {value}.")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]
