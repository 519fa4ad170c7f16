"""The study part of a recipe: the stages it trains (teachers named by stage) and how a model is recommended."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from medkd.deploy import ExportConfig
from medkd.derive import DERIVED_RUNS, DeriveSettings, derive_settings
from medkd.distillation import DistillConfig
from medkd.settings import StrictModel


class StageConfig(StrictModel):
    """One model of the study: `train` overrides the recipe's train section; `distill` makes it a student."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="also the stage's folder name")
    train: dict = Field(default_factory=dict, description="keys of the recipe's train section to change")
    distill: DistillConfig | None = Field(None, description="makes it a student: a distill section whose teachers "
                                                             "are names of other stages")
    data: dict = Field(default_factory=dict, description="keys of the recipe's data section to change, e.g. "
                                                         "split.train_fraction for a label-efficiency study")
    pretrain: dict | None = Field(None, description="makes this a self-supervised pretraining stage: keys of the "
                                                    "recipe's pretrain section to change; it has no test scores")
    weights_from: str | None = Field(None, description="start from another stage's result (same seed): a "
                                                       "pretraining stage's backbone or a trained stage's model")
    derive: SerializeAsAny[DeriveSettings] | None = Field(
        None, description="makes this a run derived from the weights_from stage's run (same seed), nothing trained: "
                          "a registered method of medkd.derive, e.g. {name: wise-ft, alpha: 0.5}")

    @field_validator("derive", mode="before")
    @classmethod
    def _a_registered_method(cls, value: Any) -> DeriveSettings | None:
        return None if value is None else derive_settings(value)

    @model_validator(mode="after")
    def _derived_from_a_stage(self) -> StageConfig:
        if self.derive is None:
            return self
        if self.weights_from is None or self.distill is not None or self.pretrain is not None or self.train:
            raise ValueError(f"stage {self.name}: a derived stage (derive: {self.derive.name}) names its source "
                             "stage in weights_from and takes no train, distill or pretrain section")
        if DERIVED_RUNS[self.derive.name].needs_site_images:
            raise ValueError(f"stage {self.name}: {self.derive.name} learns from a site's images, which a study does "
                             "not have: run it on a finished run with `medkd adapt`")
        return self

    @model_validator(mode="after")
    def _pretraining_stands_alone(self) -> StageConfig:
        if self.pretrain is not None and (self.distill is not None or self.weights_from is not None):
            raise ValueError(f"stage {self.name}: a pretraining stage takes no distill or weights_from section")
        return self

    @property
    def needs(self) -> set[str]:
        """The stages this one waits for: its teachers and the stage its weights come from."""
        return {*(self.distill.teachers if self.distill else []), *([self.weights_from] if self.weights_from else [])}


class SelectionConfig(StrictModel):
    """How the recommended model is picked, from validation scores and cost only, never test: (1) the stages within
    the deployment budget; (2) among them, those whose mean validation `metric` is within `tolerance` of the best;
    (3) among those, the ones as fast as the fastest (CPU latency within `latency_tolerance` of it, or the same
    MACs and parameters: a distilled student and its control run the same network, and the timer's noise on a
    shared CPU can be 2x at 1 ms); (4) of these, the lowest mean
    validation `tie_breaker`, a proper scoring rule that still separates models when validation AUC saturates."""

    metric: str = Field("auc", description="a metric of medkd.evaluation.SCALARS, higher is better")
    tolerance: float = Field(0.01, ge=0, description="stages within this of the best val score count as equal")
    latency_tolerance: float = Field(0.25, ge=0, description="stages whose CPU latency (batch 1) is at most this share "
                                                             "above the fastest contender's count as equally fast")
    tie_breaker: Literal["log_loss", "brier"] = Field(
        "log_loss", description="among equally good and equally fast stages, the lowest mean validation value wins")
    # A deployment budget: a clinic's CPU and memory decide what may be recommended (a search within a budget).
    max_parameters: int | None = Field(None, gt=0, description="only stages with at most this many parameters "
                                                               "are recommended")
    max_latency_ms: float | None = Field(None, gt=0, description="only stages at most this fast on the CPU (PyTorch "
                                                                 "fp32, batch 1, median) are recommended")

    @field_validator("metric")
    @classmethod
    def _known(cls, metric: str) -> str:
        from medkd.evaluation import LOWER_IS_BETTER, SCALARS

        if metric not in SCALARS or metric in LOWER_IS_BETTER:
            raise ValueError(f"selection.metric must be one of {[m for m in SCALARS if m not in LOWER_IS_BETTER]}")
        return metric

    @property
    def has_budget(self) -> bool:
        return self.max_parameters is not None or self.max_latency_ms is not None


class StudyExportConfig(ExportConfig):
    """Which runs a study exports for deployment once they are evaluated (into RUN/export, as `medkd export RUN`
    does), with medkd export's settings; e.g. {int8: true, stages: [student, student_kd]}."""

    stages: list[str] | None = Field(None, description="stages whose runs are exported; default: every stage "
                                                       "that has test scores")

    def covers(self, stage: StageConfig) -> bool:
        return stage.pretrain is None and (self.stages is None or stage.name in self.stages)
