"""What a model costs: parameters, multiply-accumulates, checkpoint size, CPU latency and throughput."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Efficiency:
    parameters: int
    macs: int  # multiply-accumulates of one image (torch's flop counter / 2)
    checkpoint_bytes: int | None
    latency_ms_median: float  # batch 1
    latency_ms_p95: float
    throughput_images_per_s: float  # at `batch_size`
    batch_size: int
    threads: int
    input_shape: tuple[int, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass over `example` (convolutions, matrix products)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(example)
    return counter.get_total_flops() // 2


def time_inference(run: Callable[[Any], Any], single: Any, batch: Any, *, repeats: int = 50,
                   warmup: int = 10) -> tuple[float, float, float]:
    """Median and 95th-percentile latency (ms) of `run(single)` over `repeats` calls after `warmup`, and the
    throughput (images/s) of `run(batch)`; `run` may wrap any engine (PyTorch, ONNX Runtime)."""
    for _ in range(warmup):
        run(single)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(single)
        timings.append((time.perf_counter() - started) * 1000)
    run(batch)
    batch_runs = max(3, repeats // 10)
    started = time.perf_counter()
    for _ in range(batch_runs):
        run(batch)
    throughput = len(batch) * batch_runs / (time.perf_counter() - started)
    return float(np.median(timings)), float(np.percentile(timings, 95)), throughput


@torch.no_grad()
def measure_efficiency(model: nn.Module, input_shape: tuple[int, int, int], *, checkpoint: Path | None = None,
                       repeats: int = 50, warmup: int = 10, batch_size: int = 32) -> Efficiency:
    """Latency at batch 1 (median and 95th percentile over `repeats` runs after `warmup`) and throughput at
    `batch_size`, in fp32 eval mode on the CPU with torch's current thread count."""
    model = model.eval().to(memory_format=torch.channels_last)
    single = torch.randn(1, *input_shape).contiguous(memory_format=torch.channels_last)
    batch = torch.randn(batch_size, *input_shape).contiguous(memory_format=torch.channels_last)
    median, p95, throughput = time_inference(model, single, batch, repeats=repeats, warmup=warmup)
    return Efficiency(
        parameters=sum(p.numel() for p in model.parameters()), macs=count_macs(model, single),
        checkpoint_bytes=os.path.getsize(checkpoint) if checkpoint is not None else None,
        latency_ms_median=median, latency_ms_p95=p95, throughput_images_per_s=throughput, batch_size=batch_size,
        threads=torch.get_num_threads(), input_shape=tuple(input_shape))
