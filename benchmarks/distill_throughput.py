"""Seconds per training epoch of a student alone and with KD from each kind of teacher output: cached logits,
cached logits of K augmented views replayed, and an online teacher, then function matching (mixup) on K replayed
mixed views and online; the teacher at the student's resolution or at its own (cross-resolution). Default:
resnet50 -> resnet18 at 128 px, grey input; precision as `train.runtime.precision: auto` picks it.

    python benchmarks/distill_throughput.py [--data PATH] [--size 128] [--teacher-size 224] [--views 4]
                                            [--mixup 1.0] [--batches 20] [--batch-size 32]

Each mode trains `--batches` batches (after 2 warm-up batches) through the same Lightning modules and data
loader `medkd train` and `medkd distill` use; seconds per epoch = seconds per batch x batches in an epoch of the
train split. The one-off cost of the cached modes (teacher outputs over the train split, K times and augmented
for cached views) is printed apart. Teacher weights are random: speed does not depend on them. With --data the
batches come from that folder's train split (decode cache; at --teacher-size for the teacher's view), else from
generated images.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from medkd.data import DataConfig, prepare
from medkd.device import lightning_precision
from medkd.distillation import DistillationModule, DistillConfig, FrozenTeacher
from medkd.engine import ClassifierModule, TrainConfig, ViewPlan, augmented_view, build_augmentation
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


def train_images(data: str | None, size: int, count: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 train images (N, 1, size, size) and labels: a folder's train split, or generated."""
    if data:
        prepared = prepare(DataConfig(path=data, preprocessing={"size": size, "channels": 1}), show_progress=False)
        return tuple(torch.from_numpy(a) for a in prepared.split("train"))
    generator = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (count, 1, size, size), dtype=torch.uint8, generator=generator),
            torch.randint(0, 2, (count,), generator=generator))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--teacher", default="resnet50")
    parser.add_argument("--student", default="resnet18")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--teacher-size", type=int, default=None, help="the teacher's resolution (default: --size)")
    parser.add_argument("--views", type=int, default=4, help="cached views: augmented views per image")
    parser.add_argument("--mixup", type=float, default=1.0, help="function matching: Beta concentration")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()

    teacher_size = args.teacher_size or args.size
    images, labels = train_images(args.data, args.size)
    teacher_images = images if teacher_size == args.size else train_images(args.data, teacher_size)[0]
    used = (args.batches + 2) * args.batch_size
    settings = TrainConfig(model=args.student, batch_size=args.batch_size)
    bf16 = lightning_precision(settings.runtime.precision, "cpu") == "bf16-mixed"
    mean, std = normalisation(1)
    torch.manual_seed(0)
    model = create_model(args.teacher, num_classes=2, in_chans=1).to(memory_format=torch.channels_last)
    cross = teacher_size != args.size
    teacher = (FrozenTeacher([model], own_view=[0], own_normalisation=[(mean, std)]) if cross
               else FrozenTeacher([model]))
    started = time.perf_counter()
    cached = predict_logits(model, teacher_images[:used], mean=mean, std=std, batch_size=args.batch_size,
                            bf16=bf16)[:, None]
    logits_seconds = (time.perf_counter() - started) / used * len(images)
    augmentation = build_augmentation(settings.augment)

    def replayed_logits(mixup: float) -> tuple[torch.Tensor, float]:
        """The teacher's logits on K augmented (mixed) views (N, K, 1, 2), and their one-off cost over the split."""
        started = time.perf_counter()
        logits = torch.stack([predict_logits(model, augmented_view(augmentation, teacher_images[:used], 0, k, mixup),
                                             mean=mean, std=std, batch_size=args.batch_size, bf16=bf16)[:, None]
                              for k in range(args.views)], dim=1)
        return logits, (time.perf_counter() - started) / used * len(images)

    views, views_seconds = replayed_logits(0.0)
    mixed, mixed_seconds = replayed_logits(args.mixup)
    epoch_batches = math.ceil(len(images) / args.batch_size)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {'bf16' if bf16 else 'fp32'}, "
          f"{args.teacher} at {teacher_size} px -> {args.student} at {args.size} px, batch {args.batch_size}, "
          f"{len(images)} train images ({epoch_batches} batches per epoch), timed over {args.batches} batches")

    rows = {}
    plans = {"student alone": ((images[:used], labels[:used]), ViewPlan(), None),
             "KD, cached teacher": ((images[:used], labels[:used], cached), ViewPlan(), "cached"),
             f"KD, cached views (K={args.views})": ((images[:used], labels[:used], views),
                                                   ViewPlan(replay=args.views), "cached_views"),
             "KD, online teacher": ((images[:used], labels[:used], *([teacher_images[:used]] if cross else [])),
                                    ViewPlan(paired=int(cross)), "online")}
    mixups = {f"FM, cached mixed views (K={args.views})": ((images[:used], labels[:used], mixed),
                                                          ViewPlan(replay=args.views, mixup=args.mixup),
                                                          "cached_views"),
              "FM, online teacher": (plans["KD, online teacher"][0], ViewPlan(paired=int(cross)), "online")}
    for mode, (train, plan, outputs) in {**plans, **mixups}.items():
        student = create_model(args.student, num_classes=2, in_chans=1).to(memory_format=torch.channels_last)
        if outputs is None:
            module = ClassifierModule(student, settings, mean=mean, std=std)
        else:
            module = DistillationModule(student, teacher, settings, DistillConfig(
                teachers=["benchmark"], teacher_outputs=outputs, views=args.views,
                mixup=args.mixup if mode in mixups else 0.0), mean=mean, std=std)
        module.log = lambda *a, **k: None  # no trainer attached: logging is not part of the cost measured
        loader = TensorDataModule({"train": train}, args.batch_size, augment=settings.augment,
                                  train_views=plan).train_dataloader()
        rows[mode] = seconds_per_batch(module, loader, args.batches, bf16) * epoch_batches
        print(f"{mode:<28}{rows[mode]:>9.1f} s/epoch  ({rows[mode] / rows['student alone']:.2f}x the student alone)",
              flush=True)
    print(f"one-off teacher logits over the train split: cached {logits_seconds:.1f} s, "
          f"cached views (K={args.views}, augmented) {views_seconds:.1f} s, "
          f"cached mixed views (K={args.views}, augmented and mixed) {mixed_seconds:.1f} s")


if __name__ == "__main__":
    main()
