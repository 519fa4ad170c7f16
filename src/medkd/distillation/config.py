"""Validated distillation settings: teachers, the distillation loss, and how teacher outputs are produced."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medkd.settings import StrictModel

HINT_ONLY = "hint"  # loss: hint trains on the feature hint alone, without a logit loss


class HintConfig(StrictModel):
    """A feature-level term: a registered feature loss (FEATURE_LOSSES) between a student feature map and a
    teacher's, taken at the module paths given."""

    student_layer: str = Field(description="module name in the student, e.g. layer3 (see model.named_modules())")
    teacher_layer: str = Field(description="module name in the teacher, e.g. layer3")
    weight: float = Field(1.0, gt=0)
    loss: str = Field("fitnet", description="a registered feature loss: fitnet (a learned 1x1 connector, MSE), "
                                            "attention (attention transfer), ...")
    loss_params: dict = Field(default_factory=dict, description="the feature loss's own settings")

    @model_validator(mode="after")
    def _a_registered_feature_loss(self) -> HintConfig:
        from medkd.distillation.hint import FEATURE_LOSSES  # the registry imports torch: when settings are read

        if self.loss not in FEATURE_LOSSES:
            raise ValueError(f"unknown feature loss {self.loss!r}: "
                             f"registered feature losses are {sorted(FEATURE_LOSSES)}")
        FEATURE_LOSSES[self.loss].Params.model_validate(self.loss_params)
        return self


class DistillConfig(StrictModel):
    """Distil one student (the recipe's `train` section) from one or more trained teachers."""

    teachers: list[str] = Field(min_length=1, description="run folders of trained teachers; several: an ensemble")
    loss: str = Field("kd", description="a registered logit loss (kd: Hinton; dkd: decoupled; lskd: "
                                        "logit-standardised; dist: Pearson correlation, DIST; see LOGIT_LOSSES), "
                                        "or hint: feature hint only")
    loss_params: dict = Field(default_factory=dict, description="the loss's own settings, e.g. dkd: tckd_weight, "
                                                                "nckd_weight")
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1, description="weight of the logit term; the hard-label loss gets 1 - alpha")
    weight_by_class: bool = Field(False, description="weigh each sample's logit term by its class's weight "
                                                     "(train.loss.class_weights), as the hard-label loss is; "
                                                     "without it class weighting reaches only the 1 - alpha "
                                                     "hard-label share of the loss")
    hint: HintConfig | None = Field(None, description="adds a feature-hint term (required by loss: hint)")
    teacher_outputs: Literal["cached", "cached_views", "online"] = Field(
        "cached", description="cached: teacher logits computed once on un-augmented train images; cached_views: "
                              "on `views` augmented views of each train image, drawn once and replayed to the "
                              "student (matched targets at a cached teacher's cost); online: the teacher sees each "
                              "augmented batch the student sees. A teacher trained at another resolution always "
                              "sees its own view of the same (augmented) sample")
    views: int = Field(4, ge=1, le=64, description="cached_views: augmented views per train image")
    mixup: float = Field(0.0, ge=0, description="function matching (Beyer et al., CVPR 2022): teacher and student "
                                                "read the same mixed images, weight lambda ~ Beta(mixup, mixup); "
                                                "online: each train batch mixed with a shuffled copy of itself; "
                                                "cached_views: each of the `views` replayed views mixed with "
                                                "another image's, partner and lambda drawn once with the view. "
                                                "The hard-label loss mixes the two labels alike. 0: off; the "
                                                "paper's 1 with alpha 1 (no labels)")

    @model_validator(mode="after")
    def _a_registered_loss_with_its_own_params(self) -> DistillConfig:
        from medkd.distillation.losses import LOGIT_LOSSES  # the registry imports this module's neighbours

        if self.loss == HINT_ONLY:
            if self.loss_params:
                raise ValueError("loss: hint takes no loss_params (the hint's settings are in `hint`)")
            return self
        if self.loss not in LOGIT_LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}: registered logit losses are {sorted(LOGIT_LOSSES)}, or "
                             f"{HINT_ONLY} for a feature hint alone")
        LOGIT_LOSSES[self.loss].Params.model_validate(self.loss_params)  # its errors name the wrong key
        return self

    @model_validator(mode="after")
    def _consistent(self) -> DistillConfig:
        if self.loss == HINT_ONLY and self.hint is None:
            raise ValueError("loss: hint needs a hint section (student_layer, teacher_layer)")
        if self.hint is not None and self.teacher_outputs != "online":
            raise ValueError("a feature hint needs the teacher's feature maps of every batch: "
                             "set teacher_outputs: online")
        if self.mixup and self.teacher_outputs == "cached":
            raise ValueError("mixup (function matching) needs the teacher's outputs on the mixed images, but "
                             "teacher_outputs: cached holds them on unmixed ones: set teacher_outputs: online (the "
                             "teachers read every batch) or cached_views (K mixed views per image, drawn once)")
        if self.hint is not None and len(self.teachers) > 1:
            raise ValueError("a feature hint is taken from one teacher: give exactly one teacher")
        return self
