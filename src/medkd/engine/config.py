"""Validated training settings: model, weights, transfer mode, optimisation, imbalance, augmentation, devices."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from medkd.device import WithRuntime
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


class ProbeConfig(StrictModel):
    """LP-FT's first step: the head trained alone on the frozen backbone's cached features."""

    epochs: int = Field(20, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)


class ProbeSearchConfig(StrictModel):
    """A linear probe's regularisation chosen on validation: one head per candidate on the cached features, the
    best by `choose_on` kept; every candidate's validation scores recorded, test never read."""

    weight_decay: list[float] = Field(min_length=2, description="AdamW weight decays to choose from (with lr 1e-3 "
                                                                "over ~1,000 steps, 1 shrinks the head by ~e^-1)")
    choose_on: Literal["val_loss", "val_auc"] = Field(
        "val_loss", description="the validation score that compares candidates, each at the epoch its own run "
                                "kept (select_on); val_loss: validation AUC saturates near 1 for every probe here")

    @model_validator(mode="after")
    def _distinct_non_negative(self) -> ProbeSearchConfig:
        if min(self.weight_decay) < 0 or len(set(self.weight_decay)) != len(self.weight_decay):
            raise ValueError(f"probe_search.weight_decay needs distinct values >= 0, got {self.weight_decay}")
        return self


BatchnormMode = Literal["re-estimate", "interpolate"]  # WiSE-FT: batch-norm statistics after mixing


class WiseFTConfig(StrictModel):
    """wise-ft: the weights interpolated between an lp-ft run's probe-initialised model and its fine-tuned one
    (Wortsman et al., CVPR 2022); nothing trains."""

    alpha: float = Field(0.5, ge=0, le=1, description="0: the probe-initialised model, 1: the fine-tuned one; "
                                                       "fixed before any test score is seen (0.5: the paper's)")
    batchnorm: BatchnormMode = Field(
        "re-estimate", description="re-estimate: batch-norm statistics measured again on the training images after "
                                   "mixing; interpolate: mixed like the weights")
    curve: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0],
                               description="alphas whose validation and test scores the run folder records "
                                           "(wise_ft_curve.csv, both batch-norm modes): a study, not a choice")

    @model_validator(mode="after")
    def _alphas_in_range(self) -> WiseFTConfig:
        if any(not 0 <= alpha <= 1 for alpha in self.curve):
            raise ValueError(f"curve alphas must lie in [0, 1], not {self.curve}")
        return self


class TrainConfig(WithRuntime):
    """One training run; where it computes is `runtime` (medkd.device.RuntimeConfig)."""

    model: str = "resnet18"
    model_args: dict = Field(default_factory=dict, description="extra keyword arguments of the model builder")
    weights: str = Field("none", description="none, a weight tag of the model (imagenet, or one registered with "
                                             "models.register_weights), or a checkpoint path")
    transfer: Literal["scratch", "linear", "finetune", "lp-ft", "wise-ft"] = Field(
        "scratch", description="scratch; linear: frozen backbone, head on cached features; finetune: all layers; "
        "lp-ft: the linear head first (probe), then all layers from it (Kumar et al., ICLR 2022); wise-ft: an "
        "lp-ft run (weights: its model file, or weights_from in a recipe) interpolated towards its probe")
    probe: ProbeConfig = Field(default_factory=ProbeConfig, description="lp-ft: the linear-probe step")
    probe_search: ProbeSearchConfig | None = Field(
        None, description="linear (and lp-ft's probe): the head's weight decay chosen on validation (select_on) "
                          "among candidates, instead of optimiser.weight_decay (probe.weight_decay)")
    wise_ft: WiseFTConfig = Field(default_factory=WiseFTConfig, description="wise-ft: the interpolation")
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

    @model_validator(mode="before")
    @classmethod
    def _optimiser_spelt_the_american_way(cls, values: Any) -> Any:
        """`optimizer` (earlier recipes and run folders' config.yaml) is read as `optimiser`; its keys win, as a
        stage's override of the recipe's section would."""
        if isinstance(values, dict) and "optimizer" in values:
            values = dict(values)
            earlier = values.pop("optimizer")
            current = values.get("optimiser") or {}
            current = current.model_dump() if isinstance(current, StrictModel) else dict(current)
            values["optimiser"] = {**current, **(earlier.model_dump() if isinstance(earlier, StrictModel) else earlier)}
        return values

    @model_validator(mode="after")
    def _a_model_the_registry_builds(self) -> TrainConfig:
        """model, weights and model_args are checked when a recipe is read, not when the stage's turn comes."""
        from medkd.models import ModelError, check_model_settings  # the registry needs torch: not on import

        try:
            check_model_settings(self.model, self.weights, self.model_args)
        except ModelError as err:
            raise ValueError(str(err)) from None
        return self

    @model_validator(mode="after")
    def _a_probe_to_search(self) -> TrainConfig:
        if self.probe_search is not None and self.transfer not in ("linear", "lp-ft"):
            raise ValueError(f"probe_search chooses a linear probe's weight decay, but transfer is {self.transfer}: "
                             "use transfer linear or lp-ft, or drop probe_search")
        return self

    @model_validator(mode="after")
    def _wise_ft_starts_from_a_run(self) -> TrainConfig:
        from medkd.models import weight_tags  # the registry needs torch: not on import

        if self.transfer == "wise-ft" and (self.weights == "none" or self.weights in weight_tags(self.model)):
            raise ValueError(f"transfer wise-ft interpolates a finished lp-ft run, not weights {self.weights!r}: "
                             "set weights to that run's model.safetensors (in a recipe: weights_from: STAGE)")
        return self
