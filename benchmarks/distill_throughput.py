"""Seconds per training epoch of a student alone, with KD from cached teacher logits, and with KD from an online
teacher (default: resnet50 -> resnet18 at 128 px, grey input; precision as `train.runtime.precision: auto` picks it).

    python benchmarks/distill_throughput.py [--data PATH] [--size 128] [--batches 20] [--batch-size 32]

Each mode trains `--batches` batches (after 2 warm-up batches) through the same Lightning modules `medkd train`
and `medkd distill` use; seconds per epoch = seconds per batch x batches in an epoch of the train split.
Teacher weights are random: speed does not depend on them. With --data the batches come from that folder's
train split (decode cache), else from generated images.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from medkd.data import DataConfig, prepare
from medkd.distillation import DistillConfig, DistillationModule, FrozenTeacher
from medkd.device import lightning_precision
from medkd.engine import ClassifierModule, TrainConfig
from medkd.engine.datamodule import TensorDataModule
from medkd.evaluation import predict_logits
from medkd.models import create_model, normalisation


def seconds_per_batch(module: ClassifierModule, loader, batches: int, bf16: bool) -> float:
    optimiser = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    module.train()
    stream = iter(loader)
    for index in range(batches + 2):
        if index == 2:  # after warm-up: allocator, kernel selection
            started = time.perf_counter()
        batch = module.on_after_batch_transfer(next(stream), 0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = module.training_step(batch, index)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return (time.perf_counter() - started) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--teacher", default="resnet50")
    parser.add_argument("--student", default="resnet18")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()

    if args.data:
        data = prepare(DataConfig(path=args.data, preprocessing={"size": args.size, "channels": 1}), show_progress=False)
        images, labels = (torch.from_numpy(a) for a in data.split("train"))
    else:
        images = torch.randint(0, 256, (2048, 1, args.size, args.size), dtype=torch.uint8)
        labels = torch.randint(0, 2, (2048,))
    used = (args.batches + 2) * args.batch_size
    settings = TrainConfig(model=args.student, batch_size=args.batch_size)
    bf16 = lightning_precision(settings.runtime.precision, "cpu") == "bf16-mixed"
    mean, std = normalisation(1)
    torch.manual_seed(0)
    teacher = FrozenTeacher([create_model(args.teacher, num_classes=2, in_chans=1).to(memory_format=torch.channels_last)])
    started = time.perf_counter()
    cached = predict_logits(teacher, images[:used], mean=mean, std=std, batch_size=args.batch_size, bf16=bf16)
    logits_seconds = (time.perf_counter() - started) / used * len(images)
    epoch_batches = math.ceil(len(images) / args.batch_size)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {'bf16' if bf16 else 'fp32'}, "
          f"{args.teacher} -> {args.student}, {args.size} px, batch {args.batch_size}, "
          f"{len(images)} train images ({epoch_batches} batches per epoch), timed over {args.batches} batches")

    rows = {}
    for mode in ("student alone", "KD, cached teacher", "KD, online teacher"):
        student = create_model(args.student, num_classes=2, in_chans=1).to(memory_format=torch.channels_last)
        if mode == "student alone":
            module, splits = ClassifierModule(student, settings, mean=mean, std=std), {"train": (images[:used], labels[:used])}
        else:
            outputs = "cached" if "cached" in mode else "online"
            splits = {"train": (images[:used], labels[:used], cached) if outputs == "cached" else (images[:used], labels[:used])}
            module = DistillationModule(student, teacher, settings,
                                        DistillConfig(teachers=["benchmark"], teacher_outputs=outputs), mean=mean, std=std)
        module.log = lambda *a, **k: None  # no trainer attached: logging is not part of the cost measured
        loader = TensorDataModule(splits, args.batch_size, augment=settings.augment).train_dataloader()
        rows[mode] = seconds_per_batch(module, loader, args.batches, bf16) * epoch_batches
        print(f"{mode:<22}{rows[mode]:>9.1f} s/epoch  ({rows[mode] / rows['student alone']:.2f}x the student alone)",
              flush=True)
    print(f"one-off teacher logits over the train split (cached mode): {logits_seconds:.1f} s")


if __name__ == "__main__":
    main()
