"""The end of a run, shared by training and by runs derived from a finished run (e.g. WiSE-FT): the card, the
calibration and decision threshold fitted on validation, the out-of-distribution guard."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchvision.transforms import v2

from medkd.data import DataConfig, PreparedData
from medkd.engine.config import TrainConfig
from medkd.engine.datamodule import augmented_view
from medkd.evaluation import (
    CalibrationConfig,
    EvaluationConfig,
    GuardConfig,
    ThresholdConfig,
    calibrated,
    calibration_record,
    choose_threshold,
    fit_guard,
    fit_temperature,
    predict_run_logits,
    predict_with_features,
)
from medkd.files import METRICS
from medkd.models import (
    CalibrationRecord,
    GuardRecord,
    Normalisation,
    PretrainedRecord,
    RunCard,
    normalisation,
    pretrained_config,
    weight_tags,
)

log = logging.getLogger(__name__)
CALIBRATION_BINS = EvaluationConfig().calibration_bins  # the card's ECE is binned as evaluation bins it


def run_card(settings: TrainConfig, data_config: DataConfig, classes: list[str], model: torch.nn.Module,
             entries: dict, **trained) -> RunCard:
    """The run's card before calibration: what rebuilds and feeds the model, how it was trained (`entries`: the
    transfer mode's and an extension's records)."""
    in_chans = data_config.preprocessing.input_channels
    mean, std = normalisation(in_chans, settings.model, settings.weights)
    card = {"architecture": settings.model, "model_args": settings.model_args, "in_chans": in_chans,
            "classes": classes, "positive_class": classes[1] if len(classes) == 2 else None,
            "preprocessing": data_config.preprocessing, "normalisation": Normalisation(mean=mean, std=std),
            "weights": settings.weights, "transfer": settings.transfer.name, **trained, **entries}
    if settings.weights in weight_tags(settings.model):
        config = pretrained_config(settings.model, settings.weights)
        card["pretrained"] = PretrainedRecord(source=model.medkd_weights_source, input_size=config.input_size,
                                              mean=list(config.mean), std=list(config.std))
        if data_config.preprocessing.size != config.input_size:
            log.info("%s trains at %d px; its %s weights were trained at %d px", settings.model,
                     data_config.preprocessing.size, settings.weights, config.input_size)
    return RunCard.model_validate(card)


def best_epoch_val_auc(out: Path, checkpoint: Path) -> float | None:
    """Validation AUC of the epoch `checkpoint` holds (metrics.csv); None when it is not there (a run killed
    before its first validation)."""
    if not checkpoint.exists() or not (out / METRICS).exists():
        return None
    epoch = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)["epoch"]
    rows = pd.read_csv(out / METRICS)
    validated = rows.loc[rows["epoch"] == epoch].dropna(subset=["val_auc"])
    return float(validated.iloc[-1]["val_auc"]) if len(validated) else None


def calibrate_on_validation(model: torch.nn.Module, data: PreparedData, card: RunCard,
                            calibration: CalibrationConfig, threshold_rule: ThresholdConfig,
                            device: torch.device, val_logits: torch.Tensor | None = None) -> RunCard:
    """`card` with, from the validation split (never test), the calibration temperature, then (binary tasks) the
    decision threshold on the calibrated P(positive). `val_logits` (N_val, classes): the model's uncalibrated
    validation logits where the caller has them already."""
    images, labels = data.split("val")
    logits = predict_run_logits(model, images, card, device=device) if val_logits is None else val_logits
    temperature = fit_temperature(logits, labels, calibration)
    record = calibration_record(logits, labels, temperature, calibration, CALIBRATION_BINS)
    log.info("temperature %.3f fitted on validation: ECE %.4f -> %.4f", temperature, record["val_ece_before"],
             record["val_ece_after"])
    update: dict = {"calibration": CalibrationRecord.model_validate(record)}
    if card.binary:
        threshold = choose_threshold(labels, calibrated(logits, temperature)[:, 1], threshold_rule)
        log.info("decision threshold %.4f chosen on validation (%s)", threshold, threshold_rule.rule)
        update.update(threshold=threshold, threshold_rule=threshold_rule.model_dump())
    return card.model_copy(update=update)


def feature_guard(model: torch.nn.Module, data: PreparedData, card: RunCard, guard_settings: GuardConfig,
                  augmentation: v2.Transform | None, seed: int, device: torch.device, out: Path) -> GuardRecord:
    """The out-of-distribution guard fitted on the training images' features of `guard_settings.features` (with
    `train_views` views of each by the training `augmentation`, seeded by `seed`), its threshold on validation,
    written into run folder `out`; its card entry (with the DICOM checks; no guard for method: none)."""
    checks = {"min_pixel_std": guard_settings.min_pixel_std, "dicom_modalities": guard_settings.dicom_modalities,
              "dicom_body_parts": guard_settings.dicom_body_parts}
    if guard_settings.method == "none":
        return GuardRecord(method="none", **checks)

    def features(images) -> np.ndarray:
        return predict_with_features(model, images, card, guard_settings.features, device=device)[1].numpy()

    train_images, train_labels = data.split("train")
    train, labels = [features(train_images)], [train_labels]
    for view in range(guard_settings.train_views if augmentation is not None else 0):
        train.append(features(augmented_view(augmentation, train_images, seed, view)))
        labels.append(train_labels)
    guard = fit_guard(np.concatenate(train), np.concatenate(labels), features(data.split("val")[0]), guard_settings)
    log.info("out-of-distribution guard (%s features, %d train views): threshold %.1f passes %.0f%% of validation "
             "images", guard_settings.features, guard_settings.train_views, guard.threshold,
             100 * guard_settings.val_pass_rate)
    return GuardRecord.model_validate({**guard.save(out), **checks})
