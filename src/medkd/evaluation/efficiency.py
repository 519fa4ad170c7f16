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
    """What a model costs on this machine's CPU (`measure_efficiency`).

    Attributes
    ----------
    parameters : int
        Every parameter, trainable or not.
    macs : int
        Multiply-accumulates of one image (torch's flop counter / 2).
    checkpoint_bytes : int or None
        Size of the weights file; None when none was given.
    latency_ms_median, latency_ms_p95 : float
        Latency of one image (batch 1), in milliseconds.
    throughput_images_per_s : float
        Images per second at `batch_size`.
    batch_size : int
    threads : int
        torch's intra-op threads while measuring.
    input_shape : tuple of int
        One image's (C, H, W).
    """

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
        """The fields as a plain dict (for JSON)."""
        return asdict(self)


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass over `example` (convolutions, matrix products).

    Parameters
    ----------
    model : nn.Module
    example : torch.Tensor of shape (N, C, H, W)
        A model input; the count is of the whole batch (N = 1 for one image's).

    Returns
    -------
    int
        torch's flop count, halved.
    """
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(example)
    return counter.get_total_flops() // 2


def time_inference(run: Callable[[Any], Any], single: Any, batch: Any, *, repeats: int = 50,
                   warmup: int = 10) -> tuple[float, float, float]:
    """Median and 95th-percentile latency (ms) of `run(single)` over `repeats` calls after `warmup`, and the
    throughput (images/s) of `run(batch)`; `run` may wrap any engine (PyTorch, ONNX Runtime).

    Parameters
    ----------
    run : callable
        One inference call, e.g. a model or a predictor's predict.
    single : array-like of shape (1, C, H, W)
        The batch-1 input `run` takes (a tensor or an array, of the dtype the engine wants).
    batch : array-like of shape (B, C, H, W)
        The throughput input; B = len(batch).
    repeats : int, default 50
        Timed batch-1 calls; the batch is run max(3, repeats // 10) times after one untimed call.
    warmup : int, default 10
        Untimed batch-1 calls first.

    Returns
    -------
    latency_ms_median : float
    latency_ms_p95 : float
    throughput_images_per_s : float
    """
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
    `batch_size`, in fp32 eval mode on the CPU with torch's current thread count.

    Parameters
    ----------
    model : nn.Module
        On the CPU; left in eval mode and channels last.
    input_shape : tuple of int
        One image's (C, H, W); the inputs are random float32 tensors of shape (1, C, H, W) and
        (batch_size, C, H, W), channels last.
    checkpoint : Path, optional
        The weights file, whose size is recorded.
    repeats, warmup : int
        See `time_inference`.
    batch_size : int, default 32

    Returns
    -------
    Efficiency
    """
    model = model.eval().to(memory_format=torch.channels_last)
    single = torch.randn(1, *input_shape).contiguous(memory_format=torch.channels_last)
    batch = torch.randn(batch_size, *input_shape).contiguous(memory_format=torch.channels_last)
    median, p95, throughput = time_inference(model, single, batch, repeats=repeats, warmup=warmup)
    return Efficiency(
        parameters=sum(p.numel() for p in model.parameters()), macs=count_macs(model, single),
        checkpoint_bytes=os.path.getsize(checkpoint) if checkpoint is not None else None,
        latency_ms_median=median, latency_ms_p95=p95, throughput_images_per_s=throughput, batch_size=batch_size,
        threads=torch.get_num_threads(), input_shape=tuple(input_shape))
