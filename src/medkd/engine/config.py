"""Validated training settings: model, weights, transfer mode, optimisation, imbalance, augmentation, devices."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from medkd.device import WithRuntime
from medkd.engine.transfer.base import TransferSettings
from medkd.evaluation import CalibrationConfig, GuardConfig, ThresholdConfig
from medkd.settings import StrictModel


class OptimiserConfig(StrictModel):
    """The optimiser: AdamW, or SGD with Nesterov momentum; the backbone may learn at a fraction of the head's lr."""

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    backbone_lr_scale: float = Field(1.0, gt=0, le=1, description="finetune: backbone lr = lr x this")


class ScheduleConfig(StrictModel):
    """The learning-rate schedule, stepped every optimiser step: cosine decay, one-cycle, or constant."""

    name: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up before cosine/constant")


class LossConfig(StrictModel):
    """The hard-label loss: cross-entropy or focal, with optional label smoothing and class weights."""

    name: Literal["cross_entropy", "focal"] = "cross_entropy"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: Literal["none", "balanced"] = Field("none", description="balanced: n / (k * count of the class)")
    focal_gamma: float = Field(2.0, ge=0)


class AugmentConfig(StrictModel):
    """Random transforms of training images (engine.augment: per image or per batch on the device); off when all
    are zero."""

    rotation_degrees: float = Field(5.0, ge=0, le=180)
    translate: float = Field(0.05, ge=0, lt=0.5, description="fraction of the side")
    scale: tuple[float, float] = (0.95, 1.05)
    brightness: float = Field(0.1, ge=0)
    contrast: float = Field(0.1, ge=0)
    horizontal_flip: bool = Field(False, description="off by default: chest X-rays have a left and a right")

    @property
    def geometric(self) -> bool:
        """An affine warp is drawn (rotation, shift or zoom)."""
        return bool(self.rotation_degrees or self.translate or tuple(self.scale) != (1.0, 1.0))

    @property
    def enabled(self) -> bool:
        return self.geometric or bool(self.brightness or self.contrast or self.horizontal_flip)


class TrainConfig(WithRuntime):
    """One training run; where it computes is `runtime` (medkd.device.RuntimeConfig)."""

    model: str = "resnet18"
    model_args: dict = Field(default_factory=dict, description="extra keyword arguments of the model builder")
    weights: str = Field("none", description="none, a weight tag of the model (imagenet, or one registered with "
                                             "models.register_weights), or a checkpoint path")
    transfer: SerializeAsAny[TransferSettings] = Field(
        "scratch", validate_default=True,
        description="a registered transfer mode (engine.transfer): its name, or {name: MODE, its settings}; "
        "scratch; finetune: all layers from pretrained weights; linear: frozen backbone, head on cached features; "
        "lp-ft: the linear head first, then all layers from it (Kumar et al., ICLR 2022), {name: lp-ft, probe: "
        "{epochs, lr, weight_decay}}")
    epochs: int = Field(10, ge=1)
    min_steps: int | None = Field(None, ge=1, description="at least this many optimiser steps: more epochs for a "
                                  "small training set (label-efficiency studies)")
    batch_size: int = Field(64, ge=1)
    optimiser: OptimiserConfig = Field(default_factory=OptimiserConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    sampler: Literal["shuffle", "balanced"] = Field("shuffle", description="balanced: draw classes equally often")
    augment: AugmentConfig | None = Field(default_factory=AugmentConfig)
    threshold: ThresholdConfig = Field(default_factory=ThresholdConfig,
                                       description="binary tasks: how the saved decision threshold is chosen on val")
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig,
                                           description="how probabilities are calibrated on val (before the threshold)")
    guard: GuardConfig = Field(default_factory=GuardConfig, description="the out-of-distribution guard")
    select_on: Literal["val_auc", "val_loss"] = Field(
        "val_auc", description="the validation score that chooses the best epoch and stops early: val_auc, or "
        "val_loss (the hard-label loss; still informative where validation AUC saturates near 1)")
    early_stopping_patience: int | None = Field(None, ge=1, description="epochs without improvement of select_on")
    seed: int = 0

    @field_validator("transfer", mode="before")
    @classmethod
    def _a_registered_transfer_mode(cls, value: Any) -> TransferSettings:
        from medkd.engine.transfer import transfer_settings  # the modes import torch lazily; the registry not

        return transfer_settings(value)

    @model_validator(mode="after")
    def _a_model_the_registry_builds(self) -> TrainConfig:
        """model, weights and model_args are checked when a recipe is read, not when the stage's turn comes."""
        from medkd.models import ModelError, check_model_settings  # the registry needs torch: not on import

        try:
            check_model_settings(self.model, self.weights, self.model_args)
        except ModelError as err:
            raise ValueError(str(err)) from None
        return self
