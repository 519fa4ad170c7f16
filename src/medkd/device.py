"""Device policy, in one place: where a setting of `accelerator` computes, in what precision, with how many
loader processes. Training (Lightning) and batch inference (features, teacher logits, thresholds,
evaluation) ask here, so predictions go where training goes."""

from __future__ import annotations

import os

import torch

GPU_LOADER_WORKERS = 8  # what the full study ran with on an H100 (docs/results.md)


def native_cpu_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AMX or AVX512-BF16). Elsewhere (e.g. AVX2-only CPUs)
    torch emulates bf16 and trains several times slower than fp32 (measured: docs/performance.md)."""
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def inference_device(accelerator: str = "auto") -> torch.device:
    """The device a Lightning `accelerator` setting computes on here: the GPU for gpu/cuda, and for auto when
    there is one (Lightning's own test, so that predictions go where training goes)."""
    from lightning.pytorch.accelerators import CUDAAccelerator  # here: deployment imports this module, not Lightning

    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and CUDAAccelerator.is_available())
    return torch.device("cuda" if on_gpu else "cpu")


def lightning_precision(choice: str, accelerator: str) -> str:
    """Lightning precision for a precision setting: auto picks bf16 mixed precision only where it is fast."""
    if choice == "32":
        return "32-true"
    if choice == "bf16":
        return "bf16-mixed"
    if inference_device(accelerator).type == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if native_cpu_bf16() else "32-true"


def loader_workers(choice: int | str, accelerator: str) -> int:
    """Data loader processes for a num_workers setting. auto: none on a CPU, where the main process reads the
    in-memory cache and workers would take cores from training; beside a GPU, whose steps outpace per-image
    augmentation in one process, one per spare core up to GPU_LOADER_WORKERS."""
    if choice != "auto":
        return int(choice)
    return min(GPU_LOADER_WORKERS, max(1, (os.cpu_count() or 1) - 1)) if inference_device(accelerator).type == "cuda" else 0
