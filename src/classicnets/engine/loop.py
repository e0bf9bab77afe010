"""The training loop: :func:`train`, read top to bottom in named steps.

``train`` claims the run directory, then :func:`_train` runs the steps: :func:`set_up`
(data, model, optimizer, schedule), :func:`restore` (fresh, or from ``last.ckpt``),
:func:`start_run_files`, then per epoch :func:`train_one_epoch`, :func:`validate` and
:func:`commit_epoch`, and at the end :func:`test_best_weights`.

Protocol: the training file is split (seeded, stratified) into train and validation
parts by the data layer; every epoch is validated; the best epoch is chosen on
validation accuracy alone; the test split is evaluated once, at the end, with the
best weights. With ``ema_decay`` set, the EMA weights are the ones validated, saved and
tested.

Crash safety. At the end of each epoch, in this order (:func:`commit_epoch`):

1. the best weights, if the epoch improved, go to a pending file;
2. ``last.ckpt`` is replaced atomically: this is the moment the epoch counts;
3. the pending file is renamed to ``best.safetensors``; metrics.csv and curves.png follow.

A kill before step 2 loses that epoch only (resuming redoes it and drops the pending
file); a kill between 2 and 3 is completed on resume. On the CPU with ``deterministic``,
an interrupted and resumed run ends with exactly the weights and metrics of an
uninterrupted one: the data order depends on (seed, epoch) only, and the checkpoint
holds every other source of state (optimizer, schedule, EMA, random generators).

Nothing is lost on the way: one training process at a time holds a run directory
(:class:`~classicnets.engine.rundir.RunLock`); a refused or failed process removes only
the files it wrote itself; a resumed run keeps the previous test results
(``summary.json``, ``confusion_matrix.png``) until its first new epoch is committed.

Distributed (``torchrun``, see distributed.py): every rank trains on its own shard with
DistributedDataParallel, validation and test figures are summed over ranks, and rank 0
alone prints and writes files, followed by a barrier so the others read what it wrote.
Exact bit-equality on resume is promised for single-process runs only.

Failures: a non-finite training or validation loss raises :class:`TrainingDiverged` (the
CLI exits with status 3), leaves the last checkpoint as it was and never makes that epoch
the best; Ctrl-C and SIGTERM raise :class:`TrainingInterrupted` (status 130 and 143) with
the command that resumes the run; so does a full disk (a UserError, status 2), since every
file is written atomically and last.ckpt keeps the last finished epoch.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import shlex
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..data import build_data, derive_seed, is_known_dataset, is_photo_dataset, list_datasets
from ..data.file_datasets import FOLDER_PREFIX
from ..device import device_name, resolve_device
from ..errors import UserError, disk_full_cause, one_line
from ..files import replace_file
from ..models import create_model, get_model_entry, run_or_refuse_input
from ..models.porting import port_report
from ..models.staged_init import copy_pairs, staged_init_pairs
from .checkpoint import (BEST_WEIGHTS, LAST_CHECKPOINT, capture_rng_state, check_checkpoint_contents,
                         load_checkpoint, load_run, read_weights, restore_rng_state, save_checkpoint, save_weights)
from .config import TrainConfig
from .distributed import (DistContext, all_reduce_sum, barrier, from_rank_zero, init_distributed, rank_device,
                          ranks_where, teardown_distributed)
from .doctor import TrainingDoctor
from .ema import ModelEma
from .split_scores import EvalResult, autocast_for, evaluate
from .optim import LRSchedule, build_optimizer, clip_gradients, training_loss
from .progress import EpochProgress, epoch_line, say
from .reports import (format_per_class, git_commit, plot_confusion_matrix, plot_curves, train_loss_terms, write_json,
                      write_metrics_csv)
from .tensorboard_log import TENSORBOARD_DIR, TensorBoardLog
from .transfer import freeze_features, inherited_model_kwargs, init_from
from .rundir import (CONFIG_FILE, CONFUSION_FILE, CURVES_FILE, METRICS_FILE, PENDING_BEST, SUMMARY_FILE, RunLock,
                     claim_default_run_dir, clear_run_files, lock_run_dir, prepare_run_dir)

EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what shells and schedulers expect


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the run directory keeps its last good checkpoint.

    ``reported``: the message was already printed (under torchrun, by rank 0, before any rank
    exited: torchrun stops the other ranks as soon as one exits with an error)."""

    def __init__(self, message: str, reported: bool = False) -> None:
        super().__init__(message)
        self.reported = reported


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM; the message says how to resume, ``exit_status`` is 130 or 143."""

    def __init__(self, message: str, exit_status: int = EXIT_INTERRUPTED) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class Terminated(KeyboardInterrupt):
    """SIGTERM (``docker stop``, Kubernetes, Slurm preemption), raised where the process is,
    like Ctrl-C's KeyboardInterrupt, so it unwinds through the same cleanup."""


@dataclass
class RunClaim:
    """What this process holds of its run directory, so that a failure cleans up only that."""

    run_dir: Path
    created_dir: bool  # this process made the directory
    lock: RunLock | None = None
    written: set[str] = field(default_factory=set)  # run files this process wrote


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
    claim: RunClaim | None = None
    try:
        with stop_on_sigterm():
            if config.sync_bn and context.enabled and device.type != "cuda":
                raise UserError("sync_bn needs CUDA (SyncBatchNorm has no CPU kernel); drop --sync-bn on the CPU.")
            if context.is_main:
                claim = claim_run_dir(config, resume, overwrite)
            run_dir = from_rank_zero(claim.run_dir if claim else None)  # it exists before any rank looks into it
            config.out = str(run_dir)
            with reproducibility(config, device), silenced_unless(context.is_main):
                return _train(config, run_dir, device, resume, quiet or not context.is_main, session_start,
                              context, claim)
    except TrainingDiverged as error:
        if not context.enabled:
            raise
        if context.is_main:  # every rank stopped at the same step; one tells the user, first
            print(f"classicnets train: error: {error}", file=sys.stderr, flush=True)
        barrier()
        error.reported = True
        raise
    except KeyboardInterrupt as stop:
        raise interrupted(stop, claim.run_dir if claim else None) from None
    except Exception as error:
        disk_full = disk_full_cause(error)
        if disk_full is None:
            raise
        raise UserError(disk_full_message(disk_full, claim.run_dir if claim else None)) from None
    finally:
        if claim is not None:
            if not resume:
                discard_unfinished_run(claim)
            if claim.lock is not None:
                claim.lock.release()
        if context.enabled:
            teardown_distributed()


def claim_run_dir(config: TrainConfig, resume: bool, overwrite: bool) -> RunClaim:
    """Name, create and lock the run directory (rank 0 alone)."""
    if config.out:
        run_dir = Path(config.out)
        if config.init_from and not resume and is_within(Path(config.init_from), run_dir):
            raise UserError(f"--init-from {config.init_from} lies in the run directory {run_dir}, whose files this "
                            f"run replaces; write the new run elsewhere (another --out).")
        claim = RunClaim(run_dir, created_dir=not run_dir.exists())
    else:  # named and created here alone: ranks and runs started in the same second agree
        claim = RunClaim(claim_default_run_dir(config.model, config.dataset), created_dir=True)
    try:
        claim.lock = lock_run_dir(claim.run_dir, resume=resume)  # first: another process may be training there
        prepare_run_dir(claim.run_dir, resume=resume, overwrite=overwrite)
    except BaseException:
        if claim.lock is not None:
            claim.lock.release()
        if claim.created_dir and claim.run_dir.is_dir() and not any(claim.run_dir.iterdir()):
            claim.run_dir.rmdir()
        raise
    return claim


def is_within(path: Path, folder: Path) -> bool:
    path, folder = path.expanduser().resolve(), folder.expanduser().resolve()
    return path == folder or folder in path.parents


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while training (main thread only: Python
    delivers signals there), and put the previous handler back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted(stop: KeyboardInterrupt, run_dir: Path | None) -> TrainingInterrupted:
    """What Ctrl-C or SIGTERM cost, and how to go on."""
    what, status = ("terminated (SIGTERM)", EXIT_TERMINATED) if isinstance(stop, Terminated) else (
        "interrupted", EXIT_INTERRUPTED)
    if epochs_saved(run_dir):
        return TrainingInterrupted(f"{what}; finished epochs are saved, resume with: "
                                   f"classicnets train --resume {run_dir}", status)
    return TrainingInterrupted(f"{what} before the first epoch finished; nothing was saved, "
                               f"so start the run again", status)


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


def discard_unfinished_run(claim: RunClaim) -> None:
    """A new run that stopped before its first epoch was saved leaves nothing behind, so it
    can simply be started again (its directory too, if this run created it). Only files this
    process wrote are removed: a refused process never touches another run's files."""
    run_dir = claim.run_dir
    if not run_dir.is_dir() or epochs_saved(run_dir):
        return
    clear_run_files(run_dir, tuple(claim.written & {CONFIG_FILE, PENDING_BEST}))  # pending: a whole model
    if TENSORBOARD_DIR in claim.written:
        shutil.rmtree(run_dir / TENSORBOARD_DIR, ignore_errors=True)
    if claim.created_dir and claim.lock is not None:
        claim.lock.release()  # the lock file is ours too
        if not any(run_dir.iterdir()):
            run_dir.rmdir()


@dataclass
class Session:
    """Everything one training process works with, built by :func:`set_up`."""

    config: TrainConfig
    run_dir: Path
    device: torch.device
    context: DistContext
    claim: RunClaim | None  # rank 0's hold on the run directory; None on the other ranks
    quiet: bool
    data: Any  # the DataBundle
    model: nn.Module  # the plain module: what is saved
    step_model: nn.Module  # what the training step calls (DDP and/or compiled around model)
    ddp_model: nn.Module
    eval_model: nn.Module  # what is validated, kept and tested (the EMA copy when on)
    ema: ModelEma | None
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    criterion: nn.Module
    autocast: contextlib.AbstractContextManager
    model_kwargs: dict
    weights_metadata: dict
    loss_terms: list[str]
    resumed: bool
    stale_results: bool = False  # a resumed run's old test results, replaced at its first new epoch
    tensorboard: TensorBoardLog | None = None  # rank 0, with --tensorboard
    doctor: TrainingDoctor | None = None  # rank 0: says once if the run has not started to learn

    @property
    def channels_last(self) -> bool:
        return self.config.channels_last_on(self.device)  # NHWC: ~30% faster on a 2-core CPU too (oneDNN)

    @property
    def is_main(self) -> bool:
        return self.context.is_main

    def wrote(self, name: str) -> None:
        if self.claim is not None:
            self.claim.written.add(name)


def _train(config: TrainConfig, run_dir: Path, device: torch.device, resume: bool, quiet: bool,
           session_start: float, context: DistContext, claim: RunClaim | None) -> dict[str, Any]:
    checkpoint = load_checkpoint(run_dir / LAST_CHECKPOINT) if resume else None
    if checkpoint is not None:
        check_resumable(checkpoint, config, run_dir, context)
    seed_everything(config.seed)
    session = set_up(config, run_dir, device, context, claim, quiet, checkpoint)
    progress = restore(session, checkpoint)
    start_run_files(session, progress)
    announce(session, progress)
    wall_before = progress["wall_seconds"]
    try:
        for epoch in range(progress["epoch"] + 1, config.epochs + 1):
            epoch_start = time.perf_counter()
            row = train_one_epoch(session, epoch, progress)
            val = validate(session, epoch, progress, row["lr"])
            row.update(val_loss=val.loss, val_acc=val.accuracy, epoch_seconds=time.perf_counter() - epoch_start)
            progress["wall_seconds"] = wall_before + time.perf_counter() - session_start
            commit_epoch(session, progress, row)
        return test_best_weights(session, progress, wall_before, session_start)
    finally:
        if session.tensorboard is not None:
            session.tensorboard.close()


def set_up(config: TrainConfig, run_dir: Path, device: torch.device, context: DistContext,
           claim: RunClaim | None, quiet: bool, checkpoint: dict | None) -> Session:
    """Data, model, optimizer, schedule, EMA and the wrapped model the steps call."""
    split_size = {"val_size": config.val_size} if config.val_size is not None else {}  # None: not read
    data = build_data(
        config.dataset, data_dir=config.data_dir, image_size=config.image_size, batch_size=config.batch_size,
        eval_batch_size=config.effective_eval_batch_size, device=device, seed=config.seed,
        **split_size, subset=config.subset, augment=config.augment,
        loader=config.loader, num_workers=config.num_workers,
        manifest=config.manifest, skip_bad=config.skip_bad, mean=config.mean, std=config.std,
        rank=context.rank, world_size=context.world_size, progress=not quiet)
    model, model_kwargs = create_starting_model(config, data.num_classes, data.in_chans,
                                                checkpoint.get("model_kwargs") if checkpoint else None)
    check_batch_norm_batch(model, data.train.num_samples // len(data.train))
    if device.type == "mps":
        check_forward_on(device, model, data.in_chans, data.image_size)
    if config.sync_bn and context.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same parameter names: checkpoints stay plain
    model.to(device, memory_format=torch.channels_last if config.channels_last_on(device) else torch.contiguous_format)
    optimizer = build_optimizer(model, config, device)
    schedule = LRSchedule(optimizer, config, steps_per_epoch=math.ceil(len(data.train) / config.grad_accum_steps))
    ema = ModelEma(model, config.ema_decay) if config.ema_decay else None
    ddp_model = wrap_data_parallel(model, device, context)  # model itself stays the plain module
    aux_weight = max((w if config.aux_weight is None else config.aux_weight for w in model.aux_outputs.values()),
                     default=None)  # for the curves' legend; None: no auxiliary outputs
    return Session(
        config=config, run_dir=run_dir, device=device, context=context, claim=claim, quiet=quiet, data=data,
        model=model, ddp_model=ddp_model,
        step_model=torch.compile(ddp_model, mode=config.compile_mode) if config.compile else ddp_model,
        eval_model=ema.module if ema is not None else model, ema=ema, optimizer=optimizer, schedule=schedule,
        criterion=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        autocast=autocast_for(device, config.bf16_on(device.type)), model_kwargs=model_kwargs,
        weights_metadata={
            "model": config.model, "dataset": config.dataset, "num_classes": data.num_classes,
            "in_chans": data.in_chans, "image_size": data.image_size, "mean": data.mean, "std": data.std,
            "class_names": data.class_names, "model_kwargs": model_kwargs,
        },
        loss_terms=train_loss_terms(config.label_smoothing, aux_weight), resumed=checkpoint is not None,
        stale_results=checkpoint is not None,
        doctor=TrainingDoctor(model, config, data.num_classes) if context.is_main else None)


def restore(session: Session, checkpoint: dict | None) -> dict[str, Any]:
    """Where training stands: a fresh start, or the state ``last.ckpt`` committed."""
    progress: dict[str, Any] = {"epoch": 0, "best_val_acc": -1.0, "best_epoch": 0, "history": [],
                                "wall_seconds": 0.0, "world_size": session.context.world_size}
    if checkpoint is not None:
        try:
            session.model.load_state_dict(checkpoint["model"])
            session.optimizer.load_state_dict(checkpoint["optimizer"])
            session.schedule.load_state_dict(checkpoint["schedule"])
            if session.ema is not None:
                session.ema.load_state_dict(checkpoint["ema"])
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as error:
            raise UserError(f"cannot resume: {session.run_dir / LAST_CHECKPOINT} does not fit the run's "
                            f"config.yaml ({one_line(error)[:200]}); start the run again with --overwrite.") from None
        progress = checkpoint["progress"]
        if session.is_main:
            settle_pending_best(session.run_dir, progress["best_epoch"])
            write_metrics_csv(session.run_dir / METRICS_FILE, progress["history"])  # it may be one epoch ahead
        restore_rng_state(checkpoint["rng"])  # last: everything above may draw random numbers
    if not session.is_main:
        # Identical initial weights came from the shared seed (and DDP broadcasts rank 0's
        # anyway); dropout must differ per rank. Rank 0 keeps the single-process stream.
        seed_everything(derive_seed(session.config.seed, "rank", session.context.rank, progress["epoch"]) % 2**32)
    return progress


def start_run_files(session: Session, progress: dict[str, Any]) -> None:
    """Clear an overwritten run's results, save the configuration and open the TensorBoard
    log, now that everything has set up: a run that failed to set up changes nothing in its
    directory."""
    if not session.is_main:
        return
    run_dir = session.run_dir
    if not session.resumed:  # --overwrite: the old results go only now that this run has set up
        clear_run_files(run_dir)
        shutil.rmtree(run_dir / TENSORBOARD_DIR, ignore_errors=True)  # the old run's log would mix in
        others = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))
        if others:  # e.g. eval-*/ or model.onnx from the previous model: not ours to delete
            say(f"note: {run_dir} still holds {', '.join(others[:5])}{', ...' if len(others) > 5 else ''} "
                f"from before; outputs of other commands there describe the previous model")
    session.config.save(run_dir / CONFIG_FILE)
    session.wrote(CONFIG_FILE)
    if session.config.tensorboard:
        if not (run_dir / TENSORBOARD_DIR).exists():
            session.wrote(TENSORBOARD_DIR)
        session.tensorboard = TensorBoardLog(run_dir, len(session.data.train), progress["epoch"])


def announce(session: Session, progress: dict[str, Any]) -> None:
    config, data, context = session.config, session.data, session.context
    say(f"{'resuming' if session.resumed else 'training'} {config.model} on {config.dataset} "
        f"({data.split_sizes['train']:,} train / {data.split_sizes['val']:,} val / "
        f"{data.split_sizes['test']:,} test images, {data.image_size} px) on {device_name(session.device)}, "
        f"in {config.precision(session.device.type).describe()}, "
        f"epochs {progress['epoch'] + 1}-{config.epochs}; run directory {session.run_dir}"
        + (f"; {context.world_size} ranks, global batch "
           f"{config.batch_size * context.world_size * config.grad_accum_steps}" if context.enabled else ""))


def train_one_epoch(session: Session, epoch: int, progress: dict[str, Any]) -> dict[str, Any]:
    """One pass over the training shard; returns the epoch's training figures (whole job)."""
    config, device, batches = session.config, session.device, session.data.train
    accum_steps = config.grad_accum_steps
    use_cuda_graphs = config.compile and device.type == "cuda" and config.compile_mode in (
        "reduce-overhead", "max-autotune")
    epoch_start = time.perf_counter()
    batches.set_epoch(epoch - 1)
    session.model.train()
    bar = EpochProgress(epoch, config.epochs, len(batches), session.quiet)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # on the device: no sync per step
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen, last_logged, lr = 0, 0, 0.0
    logged_loss, logged_correct, logged_seen = 0.0, 0, 0  # at the last logging point
    for step, (images, labels) in enumerate(batches, start=1):
        if session.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        # Gradient accumulation: micro-steps [first, last] make one optimizer step; the
        # epoch's final group may be shorter, so its loss is divided by its own length.
        group_start = (step - 1) // accum_steps * accum_steps + 1
        group_length = min(accum_steps, len(batches) - group_start + 1)
        last_micro_step = step == group_start + group_length - 1
        if step == group_start:
            lr = session.schedule.step()
            session.optimizer.zero_grad(set_to_none=True)
        if use_cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with gradient_sync(session.ddp_model, last_micro_step):  # all-reduce only on the last micro-step
            with session.autocast:
                outputs = session.step_model(images)
                loss, logits = training_loss(outputs, labels, session.criterion, config.aux_weight, session.model)
            (loss / group_length if group_length > 1 else loss).backward()
        if last_micro_step:
            clip_gradients(session.model, config.grad_clip)
            session.optimizer.step()
            if session.ema is not None:
                session.ema.update(session.model)
        loss_sum += loss.detach() * labels.numel()
        correct += (logits.argmax(dim=1) == labels).sum()
        seen += labels.numel()
        if step % config.log_interval == 0 or step == len(batches):
            mean_loss = loss_sum.item() / seen  # the sync point; NaN anywhere in the epoch shows here
            stop_if_diverged(session, mean_loss, f"epoch {epoch} by step {step}", progress, lr, bar)
            elapsed = time.perf_counter() - epoch_start
            bar.update(step - last_logged, mean_loss, correct.item() / seen, seen / elapsed)
            if session.tensorboard is not None:
                session.tensorboard.training_step(epoch, step, mean_loss)
            loss_total, correct_total = mean_loss * seen, correct.item()
            consult_doctor(session, (epoch - 1) * len(batches) + step, (loss_total - logged_loss) / (seen - logged_seen),
                           (correct_total - logged_correct) / (seen - logged_seen))
            logged_loss, logged_correct, logged_seen = loss_total, correct_total, seen
            last_logged = step
    bar.close()
    train_seconds = time.perf_counter() - epoch_start
    # the whole job's figures: [loss sum, correct, images] summed over ranks
    totals = all_reduce_sum(torch.stack([loss_sum, correct.double(),
                                         torch.tensor(float(seen), dtype=torch.float64, device=device)]))
    loss_total, correct_total, seen_total = totals.tolist()
    return {"epoch": epoch, "train_loss": loss_total / seen_total, "train_acc": correct_total / seen_total,
            "lr": lr, "images_per_s": seen_total / train_seconds}


def consult_doctor(session: Session, steps_done: int, window_loss: float, window_accuracy: float) -> None:
    """The training doctor's one paragraph, if the run has not started to learn (rank 0's shard)."""
    if session.doctor is not None:
        diagnosis = session.doctor.check(steps_done, window_loss, window_accuracy)
        if diagnosis:
            tqdm_safe_say(diagnosis)


def tqdm_safe_say(text: str) -> None:
    """A line that does not tear the progress bar (tqdm redraws below it)."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stdout)


def stop_if_diverged(session: Session, loss: float, where: str, progress: dict[str, Any], lr: float,
                     bar: EpochProgress | None = None) -> None:
    """Raise :class:`TrainingDiverged` on every rank when ``loss`` is not finite on any of them,
    before anything of the epoch is committed."""
    diverged_ranks = ranks_where(not math.isfinite(loss), session.device)  # every rank stops together
    if not diverged_ranks:
        return
    if bar is not None:
        bar.close()
    ranks = (f" on rank{'s' if len(diverged_ranks) > 1 else ''} {', '.join(map(str, diverged_ranks))}"
             if session.context.enabled else "")
    value = "non-finite" if math.isfinite(loss) else str(loss)  # another rank's
    raise TrainingDiverged(diverged_message(value + ranks, where, session.run_dir, progress["epoch"], lr))


def validate(session: Session, epoch: int, progress: dict[str, Any], lr: float) -> EvalResult:
    """The validation split with the weights that would be kept; a non-finite loss is divergence."""
    val = evaluate(session.eval_model, session.data.val, session.data.num_classes, device=session.device,
                   bf16=session.config.bf16_on(session.device.type), channels_last=session.channels_last,
                   tta_flip=session.config.tta_flip)
    if not math.isfinite(val.loss):  # the same figure on every rank: it is summed over them
        raise TrainingDiverged(diverged_message(f"{val.loss} on the validation split", f"epoch {epoch}",
                                                session.run_dir, progress["epoch"], lr))
    session.schedule.end_epoch(val.accuracy)
    return val


def commit_epoch(session: Session, progress: dict[str, Any], row: dict[str, Any]) -> None:
    """Record the epoch, then make it count: pending best weights, ``last.ckpt``, the rest."""
    epoch = row["epoch"]
    improved = row["val_acc"] > progress["best_val_acc"]
    if improved:
        progress.update(best_val_acc=row["val_acc"], best_epoch=epoch)
    progress["history"].append(row)
    progress["epoch"] = epoch
    if session.is_main:
        run_dir = session.run_dir
        if improved:
            save_weights(run_dir / PENDING_BEST, session.eval_model.state_dict(),
                         {**session.weights_metadata, "epoch": epoch, "val_accuracy": row["val_acc"]})
            session.wrote(PENDING_BEST)
        save_checkpoint(run_dir / LAST_CHECKPOINT, {
            "model": session.model.state_dict(), "optimizer": session.optimizer.state_dict(),
            "schedule": session.schedule.state_dict(),
            "ema": session.ema.state_dict() if session.ema is not None else None,
            "rng": capture_rng_state(), "progress": progress, "model_name": session.config.model,
            "model_kwargs": session.model_kwargs,
        })  # the epoch is now committed
        if session.stale_results:  # the resumed run has moved on: its old test result no longer describes it
            clear_run_files(run_dir, (SUMMARY_FILE, CONFUSION_FILE))
            session.stale_results = False
        settle_pending_best(run_dir, progress["best_epoch"])
        write_metrics_csv(run_dir / METRICS_FILE, progress["history"])
        plot_curves(run_dir / CURVES_FILE, progress["history"], f"{session.config.model} on {session.config.dataset}",
                    session.loss_terms)
        if session.tensorboard is not None:
            session.tensorboard.epoch(row, run_dir / CURVES_FILE)
        say(epoch_line(row, session.config.epochs, improved))
    barrier()  # no rank runs ahead of the committed checkpoint and best weights


def test_best_weights(session: Session, progress: dict[str, Any], wall_before: float,
                      session_start: float) -> dict[str, Any]:
    """The test split, once, with the best weights; writes the confusion matrix and summary.json."""
    config, data, run_dir = session.config, session.data, session.run_dir
    best_weights, best_metadata = read_weights(run_dir / BEST_WEIGHTS)
    model = session.model
    model.load_state_dict(best_weights)
    test = evaluate(model, data.test, data.num_classes, device=session.device,
                    bf16=config.bf16_on(session.device.type),
                    channels_last=session.channels_last, tta_flip=config.tta_flip)
    if not math.isfinite(test.loss):
        raise TrainingDiverged(f"the test loss of the best weights (epoch {best_metadata['epoch']}) is "
                               f"{test.loss}, though their validation loss was finite; the test images may "
                               f"differ from the training data (check the dataset), no summary was written.")
    per_class = dict(zip(data.class_names, test.per_class_accuracy()))
    history = progress["history"]
    steady = history[1:] or history  # epoch 1 also pays for compilation and autotuning
    context = session.context
    summary = {
        "model": config.model, "dataset": config.dataset,
        "test_accuracy": test.accuracy, "test_loss": test.loss, "test_images": test.num_samples,
        "per_class_test_accuracy": per_class,
        "best_epoch": best_metadata["epoch"], "best_val_accuracy": best_metadata["val_accuracy"],
        "epochs": config.epochs, "image_size": data.image_size, "split_sizes": data.split_sizes,
        "ema": session.ema is not None, "tta_flip": config.tta_flip, "world_size": context.world_size,
        "global_batch_size": config.batch_size * context.world_size * config.grad_accum_steps,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "train_images_per_s": sum(r["images_per_s"] for r in steady) / len(steady),
        "wall_time_s": wall_before + time.perf_counter() - session_start,
        "device": device_name(session.device), "torch_version": torch.__version__,
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "run_dir": str(run_dir),
    }
    if session.is_main:
        plot_confusion_matrix(run_dir / CONFUSION_FILE, test.confusion, data.class_names,
                              f"{config.model} on {config.dataset} test: {100 * test.accuracy:.2f}%")
        if session.tensorboard is not None:
            session.tensorboard.finish(run_dir / CONFUSION_FILE, config.to_dict(),
                                       {"hparam/test_accuracy": test.accuracy, "hparam/test_loss": test.loss,
                                        "hparam/best_val_accuracy": best_metadata["val_accuracy"]},
                                       progress["epoch"])
        write_json(run_dir / SUMMARY_FILE, summary)  # last: a summary marks a finished run
    barrier()  # the job ends once the results are on disk
    say(f"per-class test accuracy:\n{format_per_class(per_class)}")
    say(f"test accuracy: {100 * test.accuracy:.2f}% (loss {test.loss:.4f}, {test.num_samples:,} images; "
        f"weights of epoch {summary['best_epoch']}, best validation accuracy "
        f"{100 * summary['best_val_accuracy']:.2f}%); results in {run_dir}")
    if is_photo_dataset(config.dataset):
        say(f"to score it on photos it never saw, in a folder laid out like these: "
            f"{unseen_photos_command(config.dataset, run_dir)}")
    return summary


def unseen_photos_command(dataset: str, run_dir: Path) -> str:
    """The `classicnets evaluate` command that scores every photo of another folder (OTHER)."""
    where = (["--dataset", f"{FOLDER_PREFIX}OTHER"] if dataset.startswith(FOLDER_PREFIX)
             else ["--dataset", dataset, "--data-dir", "OTHER"])
    return shlex.join(["classicnets", "evaluate", str(run_dir), *where, "--split", "all"])


def diverged_message(loss: str, where: str, run_dir: Path, epochs_done: int, lr: float) -> str:
    kept = (f"{run_dir / LAST_CHECKPOINT} still holds epoch {epochs_done}" if epochs_done
            else "no epoch had finished, so nothing was saved")
    return (f"training diverged: the loss became {loss} in {where}; {kept}; lower the "
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
        if config.init_mode:
            say(f"started from {config.init_from} ({config.init_mode}):\n{staged_init(model, config)}")
        else:
            say(f"started from {config.init_from}:\n{init_from(model, config.init_from)}")
    if config.freeze == "features":
        frozen = freeze_features(model)
        say(f"froze the {frozen:,} parameters outside the classifier head")
    return model, model_kwargs


def staged_init(model: nn.Module, config: TrainConfig) -> str:
    """Copy the layers ``config.init_mode`` names from the run in ``config.init_from``, by position."""
    source, _ = load_run(config.init_from)
    lines = copy_pairs(source, model, staged_init_pairs(config.init_mode, source, model))
    return "\n".join(f"  {line}" for line in lines)


def check_image_size_fits(name: str, model_kwargs: dict, num_classes: int, in_chans: int, image_size: int) -> None:
    """Fail before training, not in its first step, when the images are too small for the network
    (pooled down to nothing). Runs a shape-only copy on the meta device: no memory, no time."""
    with torch.device("meta"):
        probe = create_model(name, num_classes=num_classes, in_chans=in_chans, **model_kwargs).eval()
        images = torch.zeros(2, in_chans, image_size, image_size)
    run_or_refuse_input(probe, images, name, f"{image_size} px images", hint="; use a larger --image-size")


def check_resumable(checkpoint: dict[str, Any], config: TrainConfig, run_dir: Path, context: DistContext) -> None:
    """Refuse a resume that cannot continue the saved run as it was."""
    check_checkpoint_contents(checkpoint, run_dir / LAST_CHECKPOINT)
    saved_model = checkpoint["model_name"]
    if saved_model != config.model:
        raise UserError(f"cannot resume: {run_dir / LAST_CHECKPOINT} holds a {saved_model} but {run_dir / CONFIG_FILE} "
                        f"trains {config.model}; the files belong to different runs.")
    progress = checkpoint["progress"]
    for key in ("epoch", "best_epoch", "world_size"):
        if not isinstance(progress.get(key, 1), int) or isinstance(progress.get(key, 1), bool):
            raise UserError(f"cannot resume: {run_dir / LAST_CHECKPOINT} has no readable {key}; it is damaged.")
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


def check_forward_on(device: torch.device, model: nn.Module, in_chans: int, image_size: int) -> None:
    """Refuse a device whose kernels compute this model differently from the CPU's.

    Asked on MPS only, once before training: some of its pooling kernels gave other output
    shapes than the CPU's (ceil-mode max pooling) in torch releases still in use. Two random
    images through a copy of the model in evaluation mode, on both devices."""
    images = torch.randn(2, in_chans, image_size, image_size, generator=torch.Generator().manual_seed(0))
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        expected = reference(images)
        got = reference.to(device)(images.to(device)).cpu()
    if got.shape != expected.shape or not torch.allclose(got.float(), expected.float(), rtol=1e-2, atol=1e-3):
        detail = (f"output shape {tuple(got.shape)} instead of {tuple(expected.shape)}" if got.shape != expected.shape
                  else f"outputs differ by up to {(got - expected).abs().max().item():.3g}")
        raise UserError(f"this torch's {device.type} backend computes the model differently from the CPU "
                        f"({detail}); use --device cpu, or a newer torch.")


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
        replace_file(pending, run_dir / BEST_WEIGHTS)
    else:
        pending.unlink()


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
