"""Data-parallel training across processes (``torchrun``): setup, teardown and the few
collective operations the loop needs.

A process is part of a distributed job when torchrun started it, i.e. when ``WORLD_SIZE``
and ``RANK`` are in its environment. Every helper here is a no-op (or the identity) in a
plain single process, so the loop calls them unconditionally.

Rules of a job (see the README's "Multi-GPU and multi-node" section):

* ``batch_size`` is per rank; the global batch is ``batch_size x world_size x
  grad_accum_steps``. The learning rate is never scaled automatically: scale it with the
  global batch yourself (the linear rule of Goyal et al., 2017).
* rank 0 alone prints, draws and writes files; the others are silent.
* on CUDA, ``LOCAL_RANK`` picks the GPU and the backend is NCCL; on the CPU it is Gloo.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta

from typing import Any

import torch
import torch.distributed as dist

from ..errors import UserError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job; ``world_size == 1`` and not ``enabled`` alone."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    enabled: bool = False  # a process group exists (torchrun started us, even with one process)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_rank() -> int:
    """This process's global rank from torchrun's environment (0 outside a job)."""
    return int(os.environ.get("RANK", "0"))


def init_distributed(device: torch.device, timeout_minutes: float) -> DistContext:
    """Join the job torchrun set up (NCCL on CUDA, Gloo on the CPU); a plain process gets the default context.

    ``timeout_minutes`` bounds every collective: a rank that stops answering turns into
    an error on the others instead of a hang.
    """
    if not launched_by_torchrun():
        return DistContext()
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                            f"start at most that many processes per node.")
        torch.cuda.set_device(local_rank)  # before the group: NCCL binds each rank to its GPU
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                timeout=timedelta(minutes=timeout_minutes))
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, enabled=True)


def rank_device(device: torch.device, context: DistContext) -> torch.device:
    """The device of this rank: its own GPU on CUDA, the CPU otherwise."""
    if device.type == "cuda" and context.enabled:
        return torch.device("cuda", context.local_rank)
    return device


def teardown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """A process group is active: collectives must be called on every rank."""
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    """Wait for every rank (e.g. until rank 0 has written a checkpoint the others will read)."""
    if is_distributed():
        dist.barrier()


def from_rank_zero(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object; the value itself in a single process)."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place and return it (unchanged in a single process)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def ranks_where(flag: bool, device: torch.device) -> list[int]:
    """The ranks on which ``flag`` is true, known to every rank (``[0]`` or ``[]`` in a single
    process). A decision one rank takes alone, e.g. to stop, would leave the others waiting
    in their next collective until the timeout."""
    if not is_distributed():
        return [0] if flag else []
    flags = torch.zeros(dist.get_world_size(), device=device)
    flags[dist.get_rank()] = float(flag)
    dist.all_reduce(flags, op=dist.ReduceOp.SUM)
    return [rank for rank, value in enumerate(flags.tolist()) if value]


def torchrun_command(nproc: int, classicnets_argv: list[str]) -> list[str]:
    """The command that runs ``classicnets <classicnets_argv>`` as ``nproc`` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "classicnets", *classicnets_argv]


def launch_torchrun(nproc: int, classicnets_argv: list[str]) -> int:
    """Run torchrun in a child process and return its exit status (non-zero if any rank failed)."""
    import subprocess

    return subprocess.call(torchrun_command(nproc, classicnets_argv))
