"""Training throughput (images/s) of VGG16 and GoogLeNet at 224 px.

Measures the training step of engine/loop.py (forward, loss incl. GoogLeNet's aux
heads, backward, SGD step) on batches from the device-resident data path
(`loader: device`: uint8 Fashion-MNIST on the GPU, augmented and resized there), with
bf16 autocast and channels_last on CUDA and optional torch.compile. Warm-up steps
(compilation, cuDNN autotuning) are excluded; one JSON line per model.

    python benchmarks/throughput.py --data-dir DIR                     # H100: vgg16, googlenet at 224 px
    python benchmarks/throughput.py --compile --compile-mode max-autotune
    python benchmarks/throughput.py --device cpu --steps 2 --warmup 1 --image-size 32 --batch-size 8   # smoke
    python benchmarks/throughput.py --device cpu --steps 2 --warmup 1 --image-size 32 --batch-size 8 \
        --compile --compile-backend eager                                # smoke of the compiled path

The device is the project's own choice (`--device auto`: cuda when a GPU is there).
"""

from __future__ import annotations

import argparse
import sys

import torch

from benchlib import check_timed_steps, emit, time_steps, timed_steps_parser

DEFAULT_BATCH = {"vgg16": 128, "googlenet": 256}


def measure(model_name: str, args: argparse.Namespace, device: torch.device) -> float:
    from classicnets import create_model
    from classicnets.data import AugmentConfig, build_data
    from classicnets.engine import TrainConfig, build_optimizer, training_loss
    from classicnets.engine.split_scores import autocast_for

    batch_size = args.batch_size or DEFAULT_BATCH.get(model_name, 128)
    # Enough images for every timed step to see a fresh batch without a new epoch.
    subset = min(54000, batch_size * (args.steps + args.warmup))
    data = build_data("fashion-mnist", data_dir=args.data_dir, image_size=args.image_size, batch_size=batch_size,
                      eval_batch_size=batch_size, device=device, seed=0, subset=subset,
                      augment=AugmentConfig(erasing=0.25), loader="device")
    config = TrainConfig(model=model_name, optimizer="sgd", lr=0.01).validate()
    model = create_model(model_name, num_classes=data.num_classes, in_chans=data.in_chans)
    channels_last = device.type == "cuda"
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format).train()
    optimizer = build_optimizer(model, config, device)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    if not args.compile:
        step_model = model
    elif args.compile_backend == "inductor":
        step_model = torch.compile(model, mode=args.compile_mode)
    else:  # e.g. "eager": graph capture without code generation (a quick check of the compiled path)
        step_model = torch.compile(model, backend=args.compile_backend)
    autocast = autocast_for(device, config.bf16_on(device.type))  # the trainer's default: bf16 on CUDA only
    cuda_graphs = (args.compile and args.compile_backend == "inductor"
                   and args.compile_mode in ("reduce-overhead", "max-autotune"))

    def batches():
        epoch = 0
        while True:
            data.train.set_epoch(epoch)
            yield from data.train
            epoch += 1

    stream = batches()

    def train_step() -> None:
        images, labels = next(stream)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with autocast:
            loss, _ = training_loss(step_model(images), labels, criterion, 0.3)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return args.steps * batch_size / time_steps(train_step, args.warmup, args.steps, device)


def main(argv: list[str]) -> int:
    parser = timed_steps_parser(__doc__.splitlines()[0], "default: 128 for vgg16, 256 for googlenet")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--compile-mode", default="default",
                        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"))
    parser.add_argument("--compile-backend", default="inductor",
                        help='torch.compile backend (default inductor; "eager" only captures graphs: a quick check)')
    parser.add_argument("--data-dir", help="data root (default: $CLASSICNETS_DATA, else ./data)")
    args = parser.parse_args(argv)
    check_timed_steps(parser, args)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    for model_name in args.models:
        value = measure(model_name, args, device)
        emit(model_name, "train_images_per_s", round(value, 1), name, [sys.executable, *sys.argv],
             image_size=args.image_size, batch_size=args.batch_size or DEFAULT_BATCH.get(model_name, 128),
             bf16=device.type == "cuda", channels_last=device.type == "cuda", compile=args.compile,
             compile_mode=args.compile_mode if args.compile else None,
             compile_backend=args.compile_backend if args.compile else None, loader="device")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
