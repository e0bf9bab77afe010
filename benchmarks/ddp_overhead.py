"""Cost of the DistributedDataParallel code path: one plain process vs one DDP rank.

Both measure the training step of engine/loop.py (forward, loss, backward, SGD step) on
random data resident on the device. The "ddp" run is launched through
``torchrun --nproc_per_node 1`` and goes through the loop's own setup
(``init_distributed``, ``wrap_data_parallel``), so the difference between the two lines
is what the DDP wrapper (gradient buckets, all-reduce hooks) costs a single GPU. With
``--nproc N`` the DDP line measures N ranks instead (images/s summed over ranks).
One JSON line per mode; warm-up steps are excluded.

    python benchmarks/ddp_overhead.py                                    # GPU (if any): vgg16 and googlenet
    python benchmarks/ddp_overhead.py --device cpu --models googlenet --image-size 32 \\
        --batch-size 8 --steps 3 --warmup 1                              # CPU smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from benchlib import check_timed_steps, emit, time_steps, timed_steps_parser

DEFAULT_BATCH = {"vgg16": 64, "googlenet": 128}


def measure(model_name: str, args: argparse.Namespace, ddp: bool) -> tuple[float, str, int]:
    """Images/s of this process's training steps; the device's name; the world size."""
    import torch

    from classicnets import create_model
    from classicnets.engine import TrainConfig, build_optimizer, training_loss
    from classicnets.engine.distributed import init_distributed, rank_device
    from classicnets.engine.split_scores import autocast_for
    from classicnets.engine.loop import device_name, wrap_data_parallel

    device = torch.device(args.device)
    context = init_distributed(device, timeout_minutes=10) if ddp else None
    if context is not None:
        device = rank_device(device, context)
    batch_size = args.batch_size or DEFAULT_BATCH.get(model_name, 64)
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, in_chans=3).to(device).train()
    step_model = wrap_data_parallel(model, device, context) if context is not None else model
    config = TrainConfig(model=model_name, optimizer="sgd", lr=0.01).validate()
    optimizer = build_optimizer(model, config, device)
    criterion = torch.nn.CrossEntropyLoss()
    images = torch.randn(batch_size, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(0, 10, (batch_size,), device=device)
    autocast = autocast_for(device, config.bf16_on(device.type))  # the trainer's default: bf16 on CUDA only

    def train_step() -> None:
        with autocast:
            loss, _ = training_loss(step_model(images), labels, criterion, 0.3)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = time_steps(train_step, args.warmup, args.steps, device)
    world_size = context.world_size if context is not None else 1
    return args.steps * batch_size / seconds, device_name(device), world_size


def worker(args: argparse.Namespace) -> int:
    """One measurement per model in this process; under torchrun only rank 0 prints."""
    ddp = args.worker == "ddp"
    for model_name in args.models:
        per_rank, device, world_size = measure(model_name, args, ddp)
        if os.environ.get("RANK", "0") == "0":
            emit(model_name, "train_images_per_s", round(per_rank * world_size, 1), device,
                 [sys.executable, *sys.argv], mode=args.worker, world_size=world_size, image_size=args.image_size,
                 batch_size_per_rank=args.batch_size or DEFAULT_BATCH.get(model_name, 64),
                 bf16=device.startswith("cuda"))
    if ddp:
        from classicnets.engine.distributed import teardown_distributed

        teardown_distributed()
    return 0


def without_nproc(argv: list[str]) -> list[str]:
    """``argv`` less its ``--nproc N`` / ``--nproc=N`` (the workers do not need it)."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            kept.append(item)
    return kept


def main(argv: list[str]) -> int:
    parser = timed_steps_parser(__doc__.splitlines()[0], "per process; default 64 for vgg16, 128 for googlenet")
    parser.add_argument("--nproc", type=int, default=1, help="ranks of the DDP measurement")
    parser.add_argument("--worker", choices=("plain", "ddp"), help=argparse.SUPPRESS)  # set by the driver
    args = parser.parse_args(argv)
    # The driver only starts processes: the workers resolve the device (and import torch).
    check_timed_steps(parser, args, resolve=args.worker is not None)
    if args.nproc < 1:
        parser.error("--nproc must be at least 1")
    if args.worker is not None:
        return worker(args)
    script = os.path.abspath(__file__)
    # torchrun would read --nproc after the script as its own, ambiguous, --nproc-per-node.
    worker_argv = without_nproc(argv)
    commands = [
        [sys.executable, script, *worker_argv, "--worker", "plain"],
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
         script, *worker_argv, "--worker", "ddp"],
    ]
    for command in commands:
        status = subprocess.call(command)
        if status != 0:
            raise SystemExit(f"measurement failed (exit {status}): {' '.join(command)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
