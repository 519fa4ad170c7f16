"""Device policy, in one place: the runtime settings of every Lightning run (RuntimeConfig), where a setting of
`accelerator` computes, in what precision, with how many loader processes. Training (Lightning) and batch
inference (features, teacher logits, thresholds, evaluation) ask here, so predictions go where training goes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from medkd.settings import StrictModel

if TYPE_CHECKING:  # torch is imported where a device is decided: validating settings needs none
    import torch

GPU_LOADER_WORKERS = 8  # what the full study ran with on an H100 (docs/results.md)
GPU_INFERENCE_BATCH = 64
# Inference batches on a CPU hold about this many pixels per channel (16 images at 128 px, 4 at 256 px): a larger
# batch's activations spill out of the caches. Measured on a 2-core AMD EPYC (AVX2, fp32, docs/performance.md):
# EfficientNet-Lite0 at 224 px gives 53 images/s at batch 4-16 and 23 at batch 64; at 128 px 158 at batch 16, 116
# at batch 64.
CPU_INFERENCE_PIXELS = 16 * 128 * 128
# Exporting a backbone to ONNX takes about 15 s (EfficientNet-Lite), what PyTorch spends on some 700 images at
# 224 px: smaller splits (of a backbone not exported yet) are computed by PyTorch.
MIN_IMAGES_FOR_FEATURE_EXPORT = 1000


class RuntimeConfig(StrictModel):
    """Where and how a run computes (train, distill, pretrain); none of it changes what is learnt, except
    precision's rounding."""

    accelerator: str = Field("auto", description="Lightning's: auto, cpu, gpu, ...; predictions follow it")
    devices: int | str = "auto"
    num_nodes: int = Field(1, ge=1)
    precision: Literal["auto", "bf16", "32"] = Field(
        "auto", description="auto: bf16 mixed precision on GPUs and on CPUs with native bf16 (AMX/AVX512-BF16), "
                            "else fp32")
    channels_last: bool = True
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="data loader processes for augmentation; auto: none on a CPU, several beside a GPU")
    threads: int | None = Field(None, ge=1, description="CPU threads for torch; default: torch's choice")
    tracking: str | None = Field(None, description="log runs to an experiment tracker: mlflow (a local store "
                                 "beside the runs, or $MLFLOW_TRACKING_URI) or mlflow:URI; needs medkd[mlflow]")
    images_on_device: Literal["auto"] | bool = Field(
        "auto", description="keep the training images (uint8) on the training device and augment them there batch by "
        "batch (train, distill, linear probes; self-supervised pretraining draws its views in the loader); auto: on "
        "a GPU, where per-image augmentation in loader processes leaves it waiting")

    @field_validator("tracking")
    @classmethod
    def _a_tracker_medkd_has(cls, value: str | None) -> str | None:
        from medkd.tracking import check_tracking

        return check_tracking(value)


class WithRuntime(StrictModel):
    """Settings of a Lightning run: `runtime` holds RuntimeConfig. Its fields may also be given at the top level, as
    earlier recipes and run folders' config.yaml have them: they are moved under `runtime`, and win over
    what `runtime` says."""

    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    @model_validator(mode="before")
    @classmethod
    def _nest_runtime(cls, values: Any) -> Any:
        if not isinstance(values, dict) or not set(values) & set(RuntimeConfig.model_fields):
            return values
        values = dict(values)
        runtime = values.get("runtime") or {}
        runtime = dict(runtime) if isinstance(runtime, dict) else runtime.model_dump()
        for key in set(values) & set(RuntimeConfig.model_fields):
            runtime[key] = values.pop(key)  # wins: a stage's override, merged onto the recipe's nested settings
        values["runtime"] = runtime
        return values


def native_cpu_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AMX or AVX512-BF16). Elsewhere (e.g. AVX2-only CPUs)
    torch emulates bf16 and trains several times slower than fp32 (measured: docs/performance.md)."""
    import torch

    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def inference_device(accelerator: str = "auto") -> torch.device:
    """The device a Lightning `accelerator` setting computes on here: the GPU for gpu/cuda, and for auto when
    there is one (Lightning's own test, so that predictions go where training goes)."""
    import torch
    from lightning.pytorch.accelerators import CUDAAccelerator  # here: deployment imports this module, not Lightning

    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and CUDAAccelerator.is_available())
    return torch.device("cuda" if on_gpu else "cpu")


def inference_batch_size(device: torch.device, image_shape: tuple[int, ...]) -> int:
    """Images per batch of inference (features, teacher logits, evaluation) on `device` for images of
    `image_shape` (..., H, W): GPU_INFERENCE_BATCH on accelerators; on a CPU, the power of two that keeps a batch
    within CPU_INFERENCE_PIXELS, between 1 and GPU_INFERENCE_BATCH."""
    import torch

    if torch.device(device).type != "cpu":
        return GPU_INFERENCE_BATCH
    fits = max(1, CPU_INFERENCE_PIXELS // max(1, image_shape[-1] * image_shape[-2]))
    return min(GPU_INFERENCE_BATCH, 1 << (fits.bit_length() - 1))


def feature_engine(device: torch.device, bf16: bool = False, images: int = 0,
                   exported: bool = False) -> Literal["onnxruntime", "torch"]:
    """What computes a frozen backbone's features over a split of `images` (linear probes, probe teachers): on a CPU
    in fp32, ONNX Runtime, whose depthwise convolutions run about twice as fast as PyTorch's there (EfficientNet-
    Lite0 at 224 px: 92 against 44 images/s on a 2-core AMD EPYC; docs/performance.md), once the backbone is
    `exported` or the split is worth its export (about 15 s: MIN_IMAGES_FOR_FEATURE_EXPORT); elsewhere PyTorch."""
    import torch

    if torch.device(device).type != "cpu" or bf16:
        return "torch"
    return "onnxruntime" if exported or images >= MIN_IMAGES_FOR_FEATURE_EXPORT else "torch"


def lightning_precision(choice: str, accelerator: str) -> Literal["32-true", "bf16-mixed", "16-mixed"]:
    """Lightning precision for a precision setting: auto picks bf16 mixed precision only where it is fast."""
    if choice == "32":
        return "32-true"
    if choice == "bf16":
        return "bf16-mixed"
    if inference_device(accelerator).type == "cuda":
        import torch

        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if native_cpu_bf16() else "32-true"


def is_primary_process() -> bool:
    """True in the process of a distributed run that writes the run folder (global rank 0), and in any run that is
    not distributed. Asks torch.distributed once a process group exists; before that, the launchers' environment:
    torchrun sets RANK, SLURM's srun SLURM_PROCID, Lightning's own launcher LOCAL_RANK and NODE_RANK."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    for key in ("RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key]) == 0
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


@dataclass(frozen=True)
class Placement:
    """Where a run's whole-split predictions compute (features, threshold, guard) and in what precision: the
    device policy asked once per run."""

    device: torch.device
    bf16: bool

    @classmethod
    def of(cls, runtime: RuntimeConfig) -> Placement:
        """The placement of `runtime`'s whole-split predictions."""
        return cls(inference_device(runtime.accelerator),
                   lightning_precision(runtime.precision, runtime.accelerator) == "bf16-mixed")


def loader_workers(choice: int | str, accelerator: str) -> int:
    """Data loader processes for a num_workers setting. auto: none on a CPU, where the main process reads the
    in-memory cache and workers would take cores from training; beside a GPU, whose steps outpace per-image
    augmentation in one process, one per spare core up to GPU_LOADER_WORKERS."""
    if choice != "auto":
        return int(choice)
    return (min(GPU_LOADER_WORKERS, max(1, (os.cpu_count() or 1) - 1))
            if inference_device(accelerator).type == "cuda" else 0)


def images_on_device(choice: bool | str, accelerator: str) -> bool:
    """Whether training batches are gathered and augmented on the training device (an images_on_device setting).
    auto: on a GPU only. On a CPU both ways compute on the same cores, and the per-image loader keeps the random
    draws of the CPU results published so far (docs/performance.md measures both)."""
    if choice != "auto":
        return bool(choice)
    return inference_device(accelerator).type == "cuda"
