"""The training loop: one function, :func:`train`, to read top to bottom.

Protocol: the training file is split (seeded, stratified) into train and validation
parts by the data layer; every epoch is validated; the best epoch is chosen on
validation accuracy alone; the test split is evaluated once, at the end, with the
best weights. With ``ema_decay`` set, the EMA weights are the ones validated, saved and
tested.

Crash safety. At the end of each epoch, in this order:

1. the best weights, if the epoch improved, go to a pending file;
2. ``last.ckpt`` is replaced atomically: this is the moment the epoch counts;
3. the pending file is renamed to ``best.safetensors``; metrics.csv and curves.png follow.

A kill before step 2 loses that epoch only (resuming redoes it and drops the pending
file); a kill between 2 and 3 is completed on resume. On the CPU with ``deterministic``,
an interrupted and resumed run ends with exactly the weights and metrics of an
uninterrupted one: the data order depends on (seed, epoch) only, and the checkpoint
holds every other source of state (optimizer, schedule, EMA, random generators).

Distributed (``torchrun``, see distributed.py): every rank trains on its own shard with
DistributedDataParallel, validation and test figures are summed over ranks, and rank 0
alone prints and writes files, followed by a barrier so the others read what it wrote.
Exact bit-equality on resume is promised for single-process runs only.

Failures: a non-finite loss raises :class:`TrainingDiverged` (the CLI exits with status
3) and leaves the last checkpoint as it was; Ctrl-C raises :class:`TrainingInterrupted`
(status 130) with the command that resumes the run; so does a full disk (a UserError,
status 2), since every file is written atomically and last.ckpt keeps the last finished epoch.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..data import build_data, derive_seed, is_known_dataset, list_datasets
from ..errors import UserError, disk_full_cause
from ..models import create_model, get_model_entry, run_or_refuse_input
from ..models.porting import port_report
from .checkpoint import (BEST_WEIGHTS, LAST_CHECKPOINT, capture_rng_state, load_checkpoint, read_weights,
                         restore_rng_state, save_checkpoint, save_weights)
from .config import TrainConfig
from .distributed import (DistContext, all_reduce_sum, barrier, from_rank_zero, init_distributed, rank_device,
                          ranks_where, teardown_distributed)
from .ema import ModelEma
from .evaluate import autocast_for, evaluate
from .optim import LRSchedule, build_optimizer, clip_gradients, training_loss
from .progress import EpochProgress, epoch_line, say
from .reports import (format_per_class, git_commit, plot_confusion_matrix, plot_curves, train_loss_terms, write_json,
                      write_metrics_csv)
from .transfer import freeze_features, inherited_model_kwargs, init_from
from .rundir import (CONFIG_FILE, CONFUSION_FILE, CURVES_FILE, METRICS_FILE, PENDING_BEST, SUMMARY_FILE,
                     claim_default_run_dir, clear_run_files, prepare_run_dir)

EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the run directory keeps its last good checkpoint.

    ``reported``: the message was already printed (under torchrun, by rank 0, before any rank
    exited: torchrun stops the other ranks as soon as one exits with an error)."""

    def __init__(self, message: str, reported: bool = False) -> None:
        super().__init__(message)
        self.reported = reported


class TrainingInterrupted(Exception):
    """Ctrl-C; the message says how to resume."""


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train ``config.model`` on ``config.dataset``; return the summary (also in summary.json)."""
    session_start = time.perf_counter()
    config.validate().with_absolute_paths()
    get_model_entry(config.model)  # unknown names fail before anything is written
    if not is_known_dataset(config.dataset):
        raise UserError(f"unknown dataset {config.dataset!r}; known datasets: {', '.join(list_datasets())}.")
    device = resolve_device(config.device)
    context = init_distributed(device, config.dist_timeout_minutes)
    device = rank_device(device, context)
    run_dir: Path | None = None
    created = False
    try:
        if config.sync_bn and context.enabled and device.type != "cuda":
            raise UserError("sync_bn needs CUDA (SyncBatchNorm has no CPU kernel); drop --sync-bn on the CPU.")
        if context.is_main:
            if config.out:
                run_dir = Path(config.out)
                created = not run_dir.exists()
            else:  # named and created here alone: ranks and runs started in the same second agree
                run_dir, created = claim_default_run_dir(config.model, config.dataset), True
            prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
        run_dir = from_rank_zero(run_dir)  # the directory exists before any rank looks into it
        config.out = str(run_dir)
        with reproducibility(config, device), silenced_unless(context.is_main):
            return _train(config, run_dir, device, resume, quiet or not context.is_main, session_start, context)
    except TrainingDiverged as error:
        if not context.enabled:
            raise
        if context.is_main:  # every rank stopped at the same step; one tells the user, first
            print(f"classicnets train: error: {error}", file=sys.stderr, flush=True)
        barrier()
        error.reported = True
        raise
    except KeyboardInterrupt:
        if epochs_saved(run_dir):
            raise TrainingInterrupted(f"interrupted; finished epochs are saved, resume with: "
                                      f"classicnets train --resume {run_dir}") from None
        raise TrainingInterrupted("interrupted before the first epoch finished; nothing was saved, "
                                  "so start the run again") from None
    except Exception as error:
        disk_full = disk_full_cause(error)
        if disk_full is None:
            raise
        raise UserError(disk_full_message(disk_full, run_dir)) from None
    finally:
        if context.is_main and run_dir is not None and not resume:
            discard_unfinished_run(run_dir, created)
        if context.enabled:
            teardown_distributed()


def epochs_saved(run_dir: Path | None) -> bool:
    """Whether the run has committed an epoch, so ``--resume`` can continue it."""
    return run_dir is not None and (run_dir / LAST_CHECKPOINT).is_file()


def disk_full_message(error: OSError, run_dir: Path | None) -> str:
    """What a full disk cost: every file is written atomically, so last.ckpt still holds the
    last finished epoch and the run resumes from it once there is room."""
    if epochs_saved(run_dir):
        return (f"the disk is full ({error.strerror}); finished epochs are saved, so free some space "
                f"and resume with: classicnets train --resume {run_dir}")
    return (f"the disk is full ({error.strerror}) before the first epoch was saved; free some space "
            f"and start the run again")


def discard_unfinished_run(run_dir: Path, created: bool) -> None:
    """A new run that stopped before its first epoch was saved leaves nothing behind, so it
    can simply be started again (its directory too, if this run created it)."""
    if not run_dir.is_dir() or epochs_saved(run_dir):
        return
    clear_run_files(run_dir, (CONFIG_FILE, PENDING_BEST))  # the pending best: a whole model's weights
    if created and not any(run_dir.iterdir()):
        run_dir.rmdir()


def _train(config: TrainConfig, run_dir: Path, device: torch.device, resume: bool, quiet: bool,
           session_start: float, context: DistContext) -> dict[str, Any]:
    checkpoint = load_checkpoint(run_dir / LAST_CHECKPOINT) if resume else None
    if checkpoint is not None:
        check_resumable(checkpoint, config, run_dir, context)
        if context.is_main:  # the test result of a shorter run must not stand for this one
            clear_run_files(run_dir, (SUMMARY_FILE, CONFUSION_FILE))
    seed_everything(config.seed)

    # ---- data and model
    data = build_data(
        config.dataset, data_dir=config.data_dir, image_size=config.image_size, batch_size=config.batch_size,
        eval_batch_size=config.effective_eval_batch_size, device=device, seed=config.seed,
        val_size=config.val_size, subset=config.subset, augment=config.augment,
        loader=config.loader, num_workers=config.num_workers,
        manifest=config.manifest, skip_bad=config.skip_bad, mean=config.mean, std=config.std,
        rank=context.rank, world_size=context.world_size, progress=not quiet)
    model, model_kwargs = create_starting_model(config, data.num_classes, data.in_chans,
                                                checkpoint.get("model_kwargs") if checkpoint else None)
    check_batch_norm_batch(model, data.train.num_samples // len(data.train))
    if config.sync_bn and context.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same parameter names: checkpoints stay plain
    channels_last = config.channels_last  # NHWC convolutions: ~30% faster on a 2-core CPU too (oneDNN)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    optimizer = build_optimizer(model, config, device)
    accum_steps = config.grad_accum_steps
    schedule = LRSchedule(optimizer, config, steps_per_epoch=math.ceil(len(data.train) / accum_steps))
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    loss_terms = train_loss_terms(config.label_smoothing, config.aux_weight if getattr(model, "aux_logits", False) else None)
    ema = ModelEma(model, config.ema_decay) if config.ema_decay else None
    eval_model = ema.module if ema is not None else model  # what is validated, kept and tested
    autocast = autocast_for(device, config.bf16)
    use_cuda_graphs = config.compile and device.type == "cuda" and config.compile_mode in (
        "reduce-overhead", "max-autotune")
    ddp_model = wrap_data_parallel(model, device, context)  # model itself stays the plain module
    step_model = torch.compile(ddp_model, mode=config.compile_mode) if config.compile else ddp_model
    weights_metadata = {
        "model": config.model, "dataset": config.dataset, "num_classes": data.num_classes,
        "in_chans": data.in_chans, "image_size": data.image_size, "mean": data.mean, "std": data.std,
        "class_names": data.class_names, "model_kwargs": model_kwargs,
    }

    # ---- where we are: fresh, or restored from last.ckpt
    progress: dict[str, Any] = {"epoch": 0, "best_val_acc": -1.0, "best_epoch": 0, "history": [],
                                "wall_seconds": 0.0, "world_size": context.world_size}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        schedule.load_state_dict(checkpoint["schedule"])
        if ema is not None:
            ema.load_state_dict(checkpoint["ema"])
        progress = checkpoint["progress"]
        if context.is_main:
            settle_pending_best(run_dir, progress["best_epoch"])
            write_metrics_csv(run_dir / METRICS_FILE, progress["history"])  # it may be one epoch ahead
        restore_rng_state(checkpoint["rng"])  # last: everything above may draw random numbers
    if not context.is_main:
        # Identical initial weights came from the shared seed (and DDP broadcasts rank 0's
        # anyway); dropout must differ per rank. Rank 0 keeps the single-process stream.
        seed_everything(derive_seed(config.seed, "rank", context.rank, progress["epoch"]) % 2**32)
    wall_before = progress["wall_seconds"]
    if context.is_main:
        if not resume:  # --overwrite: the old results go only now that this run has set up
            clear_run_files(run_dir)
            others = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))
            if others:  # e.g. eval-*/ or model.onnx from the previous model: not ours to delete
                say(f"note: {run_dir} still holds {', '.join(others[:5])}{', ...' if len(others) > 5 else ''} "
                    f"from before; outputs of other commands there describe the previous model")
        config.save(run_dir / CONFIG_FILE)  # only now: a run that failed to set up leaves no config behind
    say(f"{'resuming' if resume else 'training'} {config.model} on {config.dataset} "
        f"({data.split_sizes['train']:,} train / {data.split_sizes['val']:,} val / "
        f"{data.split_sizes['test']:,} test images, {data.image_size} px) on {device_name(device)}, "
        f"epochs {progress['epoch'] + 1}-{config.epochs}; run directory {run_dir}"
        + (f"; {context.world_size} ranks, global batch {config.batch_size * context.world_size * accum_steps}"
           if context.enabled else ""))

    # ---- the loop
    for epoch in range(progress["epoch"] + 1, config.epochs + 1):
        epoch_start = time.perf_counter()
        data.train.set_epoch(epoch - 1)
        model.train()
        bar = EpochProgress(epoch, config.epochs, len(data.train), quiet)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # on the device: no sync per step
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen, last_logged = 0, 0
        for step, (images, labels) in enumerate(data.train, start=1):
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            # Gradient accumulation: micro-steps [first, last] make one optimizer step; the
            # epoch's final group may be shorter, so its loss is divided by its own length.
            group_start = (step - 1) // accum_steps * accum_steps + 1
            group_length = min(accum_steps, len(data.train) - group_start + 1)
            last_micro_step = step == group_start + group_length - 1
            if step == group_start:
                lr = schedule.step()
                optimizer.zero_grad(set_to_none=True)
            if use_cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with gradient_sync(ddp_model, last_micro_step):  # all-reduce only on the last micro-step
                with autocast:
                    outputs = step_model(images)
                    loss, logits = training_loss(outputs, labels, criterion, config.aux_weight)
                (loss / group_length if group_length > 1 else loss).backward()
            if last_micro_step:
                clip_gradients(model, config.grad_clip)
                optimizer.step()
                if ema is not None:
                    ema.update(model)
            loss_sum += loss.detach() * labels.numel()
            correct += (logits.argmax(dim=1) == labels).sum()
            seen += labels.numel()
            if step % config.log_interval == 0 or step == len(data.train):
                mean_loss = loss_sum.item() / seen  # the sync point; NaN anywhere in the epoch shows here
                diverged_ranks = ranks_where(not math.isfinite(mean_loss), device)  # every rank stops together
                if diverged_ranks:
                    bar.close()
                    where = (f" on rank{'s' if len(diverged_ranks) > 1 else ''} "
                             f"{', '.join(map(str, diverged_ranks))}" if context.enabled else "")
                    value = "non-finite" if math.isfinite(mean_loss) else str(mean_loss)  # another rank's
                    raise TrainingDiverged(diverged_message(value + where, epoch, step, run_dir,
                                                            progress["epoch"], config.lr))
                elapsed = time.perf_counter() - epoch_start
                bar.update(step - last_logged, mean_loss, correct.item() / seen, seen / elapsed)
                last_logged = step
        bar.close()
        train_seconds = time.perf_counter() - epoch_start
        # the whole job's figures: [loss sum, correct, images] summed over ranks
        train_totals = all_reduce_sum(torch.stack([loss_sum, correct.double(),
                                                   torch.tensor(float(seen), dtype=torch.float64, device=device)]))
        train_loss_sum, train_correct, train_seen = train_totals.tolist()

        val = evaluate(eval_model, data.val, data.num_classes, device=device, bf16=config.bf16,
                       channels_last=channels_last, tta_flip=config.tta_flip)
        schedule.end_epoch(val.accuracy)
        row = {"epoch": epoch, "train_loss": train_loss_sum / train_seen, "train_acc": train_correct / train_seen,
               "val_loss": val.loss, "val_acc": val.accuracy, "lr": lr,
               "epoch_seconds": time.perf_counter() - epoch_start, "images_per_s": train_seen / train_seconds}
        improved = val.accuracy > progress["best_val_acc"]
        if improved:
            progress.update(best_val_acc=val.accuracy, best_epoch=epoch)
        progress["history"].append(row)
        progress["epoch"] = epoch
        progress["wall_seconds"] = wall_before + time.perf_counter() - session_start
        if context.is_main:
            if improved:
                save_weights(run_dir / PENDING_BEST, eval_model.state_dict(),
                             {**weights_metadata, "epoch": epoch, "val_accuracy": val.accuracy})
            save_checkpoint(run_dir / LAST_CHECKPOINT, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                "rng": capture_rng_state(), "progress": progress, "model_name": config.model,
                "model_kwargs": model_kwargs,
            })  # the epoch is now committed
            settle_pending_best(run_dir, progress["best_epoch"])
            write_metrics_csv(run_dir / METRICS_FILE, progress["history"])
            plot_curves(run_dir / CURVES_FILE, progress["history"], f"{config.model} on {config.dataset}", loss_terms)
            say(epoch_line(row, config.epochs, improved))
        barrier()  # no rank runs ahead of the committed checkpoint and best weights

    # ---- the test split, once, with the best weights
    best_weights, best_metadata = read_weights(run_dir / BEST_WEIGHTS)
    model.load_state_dict(best_weights)
    test = evaluate(model, data.test, data.num_classes, device=device, bf16=config.bf16,
                    channels_last=channels_last, tta_flip=config.tta_flip)
    per_class = dict(zip(data.class_names, test.per_class_accuracy()))
    history = progress["history"]
    steady = history[1:] or history  # epoch 1 also pays for compilation and autotuning
    summary = {
        "model": config.model, "dataset": config.dataset,
        "test_accuracy": test.accuracy, "test_loss": test.loss, "test_images": test.num_samples,
        "per_class_test_accuracy": per_class,
        "best_epoch": best_metadata["epoch"], "best_val_accuracy": best_metadata["val_accuracy"],
        "epochs": config.epochs, "image_size": data.image_size, "split_sizes": data.split_sizes,
        "ema": ema is not None, "tta_flip": config.tta_flip, "world_size": context.world_size,
        "global_batch_size": config.batch_size * context.world_size * accum_steps,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "train_images_per_s": sum(r["images_per_s"] for r in steady) / len(steady),
        "wall_time_s": wall_before + time.perf_counter() - session_start,
        "device": device_name(device), "torch_version": torch.__version__,
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "run_dir": str(run_dir),
    }
    if context.is_main:
        plot_confusion_matrix(run_dir / CONFUSION_FILE, test.confusion, data.class_names,
                              f"{config.model} on {config.dataset} test: {100 * test.accuracy:.2f}%")
        write_json(run_dir / SUMMARY_FILE, summary)  # last: a summary marks a finished run
    barrier()  # the job ends once the results are on disk
    say(f"per-class test accuracy:\n{format_per_class(per_class)}")
    say(f"test accuracy: {100 * test.accuracy:.2f}% (loss {test.loss:.4f}, {test.num_samples:,} images; "
        f"weights of epoch {summary['best_epoch']}, best validation accuracy "
        f"{100 * summary['best_val_accuracy']:.2f}%); results in {run_dir}")
    return summary


def diverged_message(loss: str, epoch: int, step: int, run_dir: Path, epochs_done: int, lr: float) -> str:
    kept = (f"{run_dir / LAST_CHECKPOINT} still holds epoch {epochs_done}" if epochs_done
            else "no epoch had finished, so nothing was saved")
    return (f"training diverged: the loss became {loss} in epoch {epoch} by step {step}; {kept}; lower the "
            f"learning rate (lr {lr:g}) or set grad_clip, then start again with --overwrite.")


def wrap_data_parallel(model: nn.Module, device: torch.device, context: DistContext) -> nn.Module:
    """DistributedDataParallel around ``model`` in a torchrun job (it broadcasts rank 0's
    weights and averages gradients); the model itself otherwise."""
    if not context.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def gradient_sync(ddp_model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """``no_sync()`` on micro-steps that only accumulate: their gradients are all-reduced
    together with the last micro-step's instead of once each."""
    if sync or not hasattr(ddp_model, "no_sync"):
        return contextlib.nullcontext()
    return ddp_model.no_sync()


@contextlib.contextmanager
def silenced_unless(speaking: bool) -> Iterator[None]:
    """Discard stdout on ranks other than 0 so a job prints one report, not one per rank."""
    if speaking:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def create_starting_model(config: TrainConfig, num_classes: int, in_chans: int,
                          resumed_kwargs: dict | None = None) -> tuple[nn.Module, dict]:
    """The network to train, with its starting weights and frozen parts as configured.

    Returns the model and the builder settings that rebuild it (torchvision's GoogLeNet
    weights switch on ``transform_input``, which later commands must know). A resumed run
    passes the settings its checkpoint saved: its weights come from the checkpoint, so the
    ``pretrained``/``init_from`` sources are not read again (they may be gone or offline).
    """
    resuming = resumed_kwargs is not None
    model_kwargs = dict(resumed_kwargs if resuming else config.model_kwargs)
    if config.init_from and not resuming:
        inherited = {k: v for k, v in inherited_model_kwargs(config.init_from, config.model, in_chans).items()
                     if k not in model_kwargs}  # the recipe's own choice wins
        if inherited:
            say(f"kept {', '.join(f'{k}={v}' for k, v in inherited.items())} from {config.init_from}, "
                f"whose weights expect it")
            model_kwargs.update(inherited)
    try:
        check_image_size_fits(config.model, model_kwargs, num_classes, in_chans, config.image_size)
        model = create_model(config.model, num_classes=num_classes, in_chans=in_chans,
                             pretrained=None if resuming else config.pretrained, **model_kwargs)
    except (TypeError, ValueError) as error:  # an unknown keyword, or a value the network refuses
        raise UserError(f"model_kwargs {model_kwargs} do not fit {config.model} ({error}).") from None
    if config.pretrained and not resuming:
        report = port_report(model)
        model_kwargs.update(report.model_kwargs)
        say(f"started from torchvision's ImageNet weights: {report.summary()}")
    if config.init_from and not resuming:
        say(f"started from {config.init_from}:\n{init_from(model, config.init_from)}")
    if config.freeze == "features":
        frozen = freeze_features(model)
        say(f"froze the {frozen:,} parameters outside the classifier head")
    return model, model_kwargs


def check_image_size_fits(name: str, model_kwargs: dict, num_classes: int, in_chans: int, image_size: int) -> None:
    """Fail before training, not in its first step, when the images are too small for the network
    (pooled down to nothing). Runs a shape-only copy on the meta device: no memory, no time."""
    with torch.device("meta"):
        probe = create_model(name, num_classes=num_classes, in_chans=in_chans, **model_kwargs).eval()
        images = torch.zeros(2, in_chans, image_size, image_size)
    run_or_refuse_input(probe, images, name, f"{image_size} px images", hint="; use a larger --image-size")


def check_resumable(checkpoint: dict[str, Any], config: TrainConfig, run_dir: Path, context: DistContext) -> None:
    """Refuse a resume that cannot continue the saved run as it was."""
    progress = checkpoint["progress"]
    if progress["epoch"] >= config.epochs and (run_dir / SUMMARY_FILE).is_file():
        raise UserError(f"run {run_dir} already finished its {config.epochs} epochs; "
                        f"pass a larger --epochs to train it further.")  # without a summary, the test is left
    saved_ranks = progress.get("world_size", 1)
    if saved_ranks != context.world_size:
        # The schedule counts optimizer steps, whose number per epoch depends on the ranks.
        raise UserError(f"run {run_dir} was trained with {saved_ranks} process(es); resume it with the same "
                        f"number (now {context.world_size}), or start a new run with --init-from {run_dir}.")


def check_batch_norm_batch(model: nn.Module, images_per_batch: int) -> None:
    """Batch norm cannot train on one image per batch (one value per channel on small maps)."""
    if images_per_batch < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise UserError("the training batches would hold 1 image, and batch norm needs at least 2; "
                        "use --batch-size 2 or more (and at least 2 training images per process).")


def settle_pending_best(run_dir: Path, committed_best_epoch: int) -> None:
    """Promote the pending best weights if the checkpoint committed their epoch, else drop them."""
    pending = run_dir / PENDING_BEST
    if not pending.is_file():
        return
    try:
        _, metadata = read_weights(pending)
        committed = metadata["epoch"] == committed_best_epoch
    except UserError:  # unreadable: it was never committed
        committed = False
    if committed:
        os.replace(pending, run_dir / BEST_WEIGHTS)
    else:
        pending.unlink()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda was asked for but no CUDA GPU is available; use --device cpu.")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


@contextlib.contextmanager
def reproducibility(config: TrainConfig, device: torch.device) -> Iterator[None]:
    """Deterministic kernels when asked, otherwise the fastest ones; restores the global flags after."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for determinism
        # warn_only: a few CUDA backward kernels (adaptive average pooling) have no
        # deterministic version; exact repeatability is promised on the CPU only.
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN time its kernels once
        torch.backends.cuda.matmul.allow_tf32 = True  # what autocast leaves in float32
        torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0])
        (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
         torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) = saved[1:]
