"""Training throughput (images/s) of resnet18 and resnet50 at 128 and 224 px, fp32 vs bf16 + channels-last,
and the data pipeline's own throughput (cache -> augmentation -> batches).

    python benchmarks/train_throughput.py [--data PATH] [--batch-size 32] [--steps 4]

With --data (a folder the data layer reads, e.g. $MEDKD_DATA/chest_xray) the pipeline runs on its real
decode cache; without it, on generated images. Model steps use random inputs: speed does not depend on content.
"""

from __future__ import annotations

import argparse
import time

import torch

from medkd.data import DataConfig, prepare
from medkd.device import native_cpu_bf16
from medkd.engine import AugmentConfig
from medkd.engine.datamodule import TensorDataModule, split_tensors
from medkd.models import create_model


def model_step_rate(name: str, size: int, bf16: bool, batch_size: int, steps: int, warmup: int = 2) -> float:
    torch.manual_seed(0)
    model = create_model(name, num_classes=2, in_chans=1)
    images = torch.randn(batch_size, 1, size, size)
    labels = torch.randint(0, 2, (batch_size,))
    if bf16:
        model, images = (model.to(memory_format=torch.channels_last),
                         images.contiguous(memory_format=torch.channels_last))
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    for _ in range(warmup):  # allocator, kernel selection
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - start)


def pipeline_rate(data_path: str | None, size: int, batch_size: int) -> float:
    if data_path is None:
        images = torch.randint(0, 256, (2048, 1, size, size), dtype=torch.uint8)
        labels = torch.randint(0, 2, (2048,))
    else:
        config = DataConfig(path=data_path, preprocessing={"size": size, "channels": 1})
        images, labels = split_tensors(prepare(config), "train")
    module = TensorDataModule({"train": (images, labels)}, batch_size, augment=AugmentConfig())
    start, seen = time.perf_counter(), 0
    for batch, _ in module.train_dataloader():
        seen += len(batch)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    native = native_cpu_bf16()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, grey input, "
          "bf16 " + ("native (AMX/AVX512-BF16)" if native
                     else "EMULATED (no AMX/AVX512-BF16): timed over 1 step of batch 8"))
    print(f"{'model':<10}{'px':>5}{'fp32 img/s':>12}{'bf16+CL img/s':>15}{'speed-up':>10}")
    fastest = {}
    for size in (128, 224):
        for name in ("resnet18", "resnet50"):
            fp32 = model_step_rate(name, size, False, args.batch_size, args.steps)
            # emulated bf16 is an order of magnitude slower: one warm-up and one timed small step say enough
            bf16 = (model_step_rate(name, size, True, args.batch_size, args.steps) if native
                    else model_step_rate(name, size, True, 8, steps=1, warmup=1))
            fastest[size] = max(fastest.get(size, 0.0), fp32, bf16)
            print(f"{name:<10}{size:>5}{fp32:>12.1f}{bf16:>15.1f}{bf16 / fp32:>9.2f}x", flush=True)
    for size in (128, 224):
        rate = pipeline_rate(args.data, size, args.batch_size)
        print(f"data pipeline at {size} px (augmentation on): {rate:,.0f} img/s = "
              f"{rate / fastest[size]:.1f}x the fastest model step at that size", flush=True)


if __name__ == "__main__":
    main()
