"""Validated settings of self-supervised pretraining."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medkd.device import WithRuntime
from medkd.settings import StrictModel


class ViewConfig(StrictModel):
    """Random views of one X-ray: crops, small rotations, brightness/contrast, blur; no colour jitter or flips
    (grey images, and chest X-rays have a left and a right)."""

    crop_scale: tuple[float, float] = Field((0.4, 1.0), description="area share of each random crop")
    rotation_degrees: float = Field(10.0, ge=0, le=180)
    brightness: float = Field(0.3, ge=0)
    contrast: float = Field(0.3, ge=0)
    blur_probability: float = Field(0.5, ge=0, le=1)
    blur_sigma: tuple[float, float] = (0.1, 2.0)


class PretrainConfig(WithRuntime):
    """One pretraining run: a factory backbone, an SSL method from lightly, and its optimisation; where it
    computes is `runtime` (medkd.device.RuntimeConfig)."""

    method: Literal["moco", "simclr"] = Field("moco", description="moco: MoCo v2 (momentum encoder, memory bank: "
                                                                   "works with small CPU batches); simclr: SimCLR")
    model: str = "resnet18"
    model_args: dict = Field(default_factory=dict)
    weights: str = Field("none", description="starting weights: none, imagenet, or a checkpoint path")
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate, cosine schedule")
    weight_decay: float = Field(1e-4, ge=0)
    temperature: float = Field(0.2, gt=0, description="of the InfoNCE / NT-Xent loss")
    projection_hidden: int = Field(512, ge=1)
    projection_dim: int = Field(128, ge=1)
    memory_bank_size: int = Field(4096, ge=0, description="moco: negatives kept from earlier batches")
    momentum: tuple[float, float] = Field((0.99, 1.0), description="moco: momentum of the key encoder, start and "
                                                                   "end of its cosine schedule")
    views: ViewConfig = Field(default_factory=ViewConfig)
    seed: int = 0
