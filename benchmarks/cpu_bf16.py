"""Training speed on the CPU in float32, under bf16 autocast, and as ``cpu_bf16: auto`` decides.

Times the trainer's step (channels-last forward, label-smoothed loss, backward, SGD
nesterov step) on random 1-channel batches at Fashion-MNIST's 28 px: the content of an
image does not change the time of a step. One JSON line per model and setting (false, true,
auto), each with the precision it ran in (``bf16``) and, for auto, why. Run it again with
``ONEDNN_MAX_CPU_ISA=AVX2`` to see what a CPU without native bf16 gets.

    python benchmarks/cpu_bf16.py                                     # the CPU recipes' models
    python benchmarks/cpu_bf16.py --models resnet20 --steps 2 --warmup 1 --batch-size 8   # smoke

A model takes keyword arguments as NAME:KEY=VALUE (e.g. vgg11_bn:head_window=1).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import yaml

from benchlib import check_timed_steps, emit, time_steps, timed_steps_parser

DEFAULT_MODELS = ["vgg11_bn", "vgg11_bn:head_window=1", "googlenet:aux_logits=false", "resnet20"]


def parse_model(spec: str) -> tuple[str, dict]:
    """``NAME[:KEY=VALUE,...]`` -> (name, keyword arguments), values read as YAML scalars."""
    name, _, options = spec.partition(":")
    kwargs = {}
    for option in filter(None, options.split(",")):
        key, _, value = option.partition("=")
        kwargs[key] = yaml.safe_load(value)
    return name, kwargs


def measure(spec: str, cpu_bf16: bool | str, args: argparse.Namespace) -> float:
    from classicnets import create_model
    from classicnets.engine import TrainConfig, build_optimizer
    from classicnets.engine.split_scores import autocast_for

    name, kwargs = parse_model(spec)
    device = torch.device("cpu")
    config = TrainConfig(model=name, optimizer="sgd", lr=0.01, cpu_bf16=cpu_bf16).validate()
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=1, **kwargs)
    model.to(memory_format=torch.channels_last).train()
    optimizer = build_optimizer(model, config, device)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    images = torch.randn(args.batch_size, 1, args.image_size, args.image_size).contiguous(
        memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (args.batch_size,))
    autocast = autocast_for(device, config.bf16_on(device.type))

    def train_step() -> None:
        with autocast:
            loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return args.steps * args.batch_size / time_steps(train_step, args.warmup, args.steps, device)


def main(argv: list[str]) -> int:
    parser = timed_steps_parser(__doc__.splitlines()[0], "default: 128")
    parser.set_defaults(models=DEFAULT_MODELS, image_size=28, batch_size=128, steps=20, warmup=3, device="cpu")
    args = parser.parse_args(argv)
    check_timed_steps(parser, args, resolve=False)
    if args.device != "cpu":
        parser.error("this benchmark measures the CPU: --device cpu")
    from classicnets.engine import TrainConfig

    for spec in args.models:
        for cpu_bf16 in (False, True, "auto"):
            value = measure(spec, cpu_bf16, args)
            precision = TrainConfig(cpu_bf16=cpu_bf16).precision("cpu")
            emit(spec, "train_images_per_s", round(value, 1), f"cpu ({torch.get_num_threads()} threads)",
                 [sys.executable, *sys.argv], image_size=args.image_size, batch_size=args.batch_size,
                 cpu_bf16=cpu_bf16, bf16=precision.bf16, precision=precision.describe(), channels_last=True,
                 onednn_max_cpu_isa=os.environ.get("ONEDNN_MAX_CPU_ISA"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
