"""Validated distillation settings: teachers, the distillation loss, and how teacher outputs are produced."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class HintConfig(BaseModel):
    """FitNets-style hint: a student feature map, through a learned 1x1 conv, regressed onto a teacher's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    student_layer: str = Field(description="module name in the student, e.g. layer3 (see model.named_modules())")
    teacher_layer: str = Field(description="module name in the teacher, e.g. layer3")
    weight: float = Field(1.0, gt=0)


class DistillConfig(BaseModel):
    """Distil one student (the recipe's `train` section) from one or more trained teachers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    teachers: list[str] = Field(min_length=1, description="run folders of trained teachers; several: an ensemble")
    loss: Literal["kd", "dkd", "lskd", "hint"] = Field(
        "kd", description="kd: Hinton; dkd: decoupled; lskd: logit-standardised; hint: feature hint only")
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1, description="weight of the logit term; the hard-label loss gets 1 - alpha")
    tckd_weight: float = Field(1.0, ge=0, description="dkd: weight of the target-class term (the paper's alpha)")
    nckd_weight: float = Field(8.0, ge=0, description="dkd: weight of the non-target-class term (the paper's beta)")
    hint: HintConfig | None = Field(None, description="adds a feature-hint term (required by loss: hint)")
    teacher_outputs: Literal["cached", "online"] = Field(
        "cached", description="cached: teacher logits computed once on un-augmented train images; "
                              "online: the teacher sees each augmented batch the student sees")

    @model_validator(mode="after")
    def _consistent(self) -> DistillConfig:
        if self.loss == "hint" and self.hint is None:
            raise ValueError("loss: hint needs a hint section (student_layer, teacher_layer)")
        if self.hint is not None and self.teacher_outputs != "online":
            raise ValueError("a feature hint needs the teacher's feature maps of every batch: set teacher_outputs: online")
        if self.hint is not None and len(self.teachers) > 1:
            raise ValueError("a feature hint is taken from one teacher: give exactly one teacher")
        return self
