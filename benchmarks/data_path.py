"""Training images/s with the data path included, and the share of the time the device spends in training steps.

    python benchmarks/data_path.py [--data PATH] [--model resnet18] [--sizes 128 224] [--channels 1]
                                   [--batch-size 64] [--batches 30] [--workers auto]

For each size, three rates on the training device (the GPU when there is one, else the CPU):
  step alone    forward, backward and AdamW on a batch already there: what the model could do
  loader        per-image augmentation (torchvision v2) in data-loader processes, batches copied over
  on device     the images kept on the device as uint8, each batch gathered and augmented there (kornia)
busy share = (step-alone time per batch) / (time per batch with that data path): 100 % means the device never
waits for data. The loader uses the processes `num_workers: auto` gives (medkd.device.loader_workers).
With --data (a folder the data layer reads, e.g. $MEDKD_DATA/chest_xray) the real decode cache is used, else
generated images. --channels 1 4 compares input channel counts (4 MRI modalities against 1 grey channel) at each
size, with generated images, and gives each count's step-alone and on-device rate as a share of the first's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import torch

from medkd.data import DataConfig, prepare
from medkd.device import inference_device, lightning_precision, loader_workers
from medkd.engine import AugmentConfig, TensorDataModule
from medkd.engine.datamodule import split_tensors
from medkd.models import create_model, normalisation, normalise


class TrainingStep:
    """One optimiser step of `model_name` on uint8 batches, in the precision medkd's auto policy picks there."""

    def __init__(self, model_name: str, device: torch.device, in_chans: int = 1) -> None:
        torch.manual_seed(0)
        self.device = device
        self.model = create_model(model_name, num_classes=2, in_chans=in_chans).to(device,
                                                                                   memory_format=torch.channels_last)
        self.optimiser = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.bf16 = lightning_precision("auto", "gpu" if device.type == "cuda" else "cpu").startswith("bf16")
        mean, std = normalisation(in_chans, model_name)
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        inputs = normalise(images, self.mean, self.std).contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = torch.nn.functional.cross_entropy(self.model(inputs).float(), labels)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def batches(module: TensorDataModule, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Train batches on `device`, endlessly, as Lightning would move them (the data module's transfer hook)."""
    while True:
        for batch in module.train_dataloader():
            images, labels = module.transfer_batch_to_device(batch, device, 0)[:2]
            yield images, labels


def seconds_per_batch(step: TrainingStep, source: Iterator, count: int, warmup: int = 3) -> float:
    for _ in range(warmup):  # loader processes start, kernels are chosen
        step(*next(source))
    step.sync()
    start = time.perf_counter()
    for _ in range(count):
        step(*next(source))
    step.sync()
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--channels", type=int, nargs="+", default=[1], help="input channel counts to compare")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--workers", default="auto", help="loader processes of the loader path (default: auto)")
    args = parser.parse_args()
    if args.data is not None and args.channels != [1]:
        parser.error("--channels compares generated images: leave out --data")
    device = inference_device("auto")
    workers = loader_workers(args.workers if args.workers == "auto" else int(args.workers), "auto")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.model}, batch {args.batch_size}, {args.batches} timed batches, on {name}; "
          f"loader path: {workers} loader processes")
    print(f"{'px':>5}{'channels':>9}{'step alone':>14}{'loader':>22}{'on device':>22}{'vs first':>18}")
    for size in args.sizes:
        first: tuple[float, float] | None = None
        for channels in args.channels:
            if args.data is None:
                images = torch.randint(0, 256, (4096, channels, size, size), dtype=torch.uint8)
                labels = torch.randint(0, 2, (4096,))
            else:
                config = DataConfig(path=args.data, preprocessing={"size": size, "channels": 1})
                images, labels = split_tensors(prepare(config, show_progress=False), "train")
            step = TrainingStep(args.model, device, channels)
            fixed = (images[: args.batch_size].to(device), labels[: args.batch_size].to(device))
            alone = seconds_per_batch(step, iter(lambda fixed=fixed: fixed, None), args.batches)
            cells, rates = [f"{args.batch_size / alone:>9,.0f} img/s"], [args.batch_size / alone]
            for on_device in (False, True):
                module = TensorDataModule({"train": (images, labels)}, args.batch_size, augment=AugmentConfig(),
                                          num_workers=workers, images_on_device=on_device)
                seconds = seconds_per_batch(step, batches(module, device), args.batches)
                cells.append(f"{args.batch_size / seconds:>9,.0f} img/s ({100 * alone / seconds:3.0f} %)")
            rates.append(args.batch_size / seconds)
            first = first or (rates[0], rates[1])
            ratio = f"{rates[0] / first[0]:.2f} / {rates[1] / first[1]:.2f}"
            print(f"{size:>5}{channels:>9}{cells[0]:>14}{cells[1]:>22}{cells[2]:>22}{ratio:>18}", flush=True)


if __name__ == "__main__":
    main()
