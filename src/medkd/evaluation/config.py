"""Validated evaluation settings: how the decision threshold is chosen (on validation) and the bootstrap."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medkd.models.kinds import FeatureKind
from medkd.settings import StrictModel


class ThresholdConfig(StrictModel):
    """How a binary model's decision threshold on P(positive) is chosen, always on the validation split."""

    rule: Literal["youden", "sensitivity", "accuracy", "fixed"] = Field(
        "youden", description="youden: max sensitivity + specificity - 1 (= best balanced accuracy); "
                              "sensitivity: the highest threshold reaching target_sensitivity; accuracy: the best "
                              "accuracy at these predictions' class mix; fixed: value")
    target_sensitivity: float = Field(0.95, gt=0, le=1)
    value: float = Field(0.5, ge=0, le=1, description="the threshold of rule: fixed")


class CalibrationConfig(StrictModel):
    """How predicted probabilities are calibrated at the end of training, always on the validation split."""

    method: Literal["temperature", "none"] = Field(
        "temperature", description="temperature: one scalar T dividing the logits, fitted by validation NLL "
                                   "(Guo et al., 2017); none: the raw softmax")
    min_temperature: float = Field(0.05, gt=0)
    max_temperature: float = Field(20.0, gt=0)
    max_iterations: int = Field(100, ge=1, description="of L-BFGS")


class GuardConfig(StrictModel):
    """The out-of-distribution guard fitted at the end of training on the training images' penultimate features,
    and what a DICOM file must say to be the kind of image the model reads."""

    method: Literal["mahalanobis", "none"] = Field(
        "mahalanobis", description="mahalanobis: class means and a shared Ledoit-Wolf covariance (Lee et al., 2018)")
    features: FeatureKind = Field(
        "penultimate", description="what the guard reads (models.FEATURE_KINDS): penultimate: the head's input; "
        "pooled: the last feature map averaged over space; blocks: the last feature map of each resolution, "
        "each averaged")
    train_views: int = Field(0, ge=0, description="augmented views of each training image added to what the guard "
                             "is fitted on (the training augmentation): a wider notion of 'like the training images'")
    val_pass_rate: float = Field(0.95, gt=0.5, lt=1, description="share of validation images the threshold passes")
    min_pixel_std: float = Field(2.0, ge=0, description="an image whose grey levels vary less than this (std, of 255, "
                                 "after preprocessing) is blank: flagged whatever its score")
    dicom_modalities: list[str] | None = Field(
        ["CR", "DX", "DR"], description="DICOM Modality values the model reads (X-ray); None: any")
    dicom_body_parts: list[str] | None = Field(
        ["CHEST"], description="BodyPartExamined values the model reads, where a file says one; None: any")


class EvaluationConfig(StrictModel):
    """How a split is scored: bootstrap confidence intervals and the bins of the calibration error."""

    bootstrap_resamples: int = Field(1000, ge=0, description="0 switches confidence intervals off")
    confidence: float = Field(0.95, gt=0, lt=1)
    calibration_bins: int = Field(15, ge=2)
    seed: int = 0
