"""A trained model at a site: its calibration temperature and decision threshold re-fitted on the site's labelled
images (`medkd calibrate`), and the site's images read as the model reads them (for the derived-run methods that
learn from them without labels, medkd.derive: AdaBN, prior shift). Each writes a new run folder; the original run
is never changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from medkd.data import (
    DEFAULT_MAX_PIXELS,
    BadImageError,
    DataConfig,
    DataError,
    Preprocessing,
    decode_file,
    is_image_candidate,
    labelled_images,
    preprocess,
)
from medkd.derive import write_derived_run
from medkd.evaluation import (
    CalibrationConfig,
    EvaluationConfig,
    ThresholdConfig,
    calibrated,
    calibration_record,
    choose_threshold,
    fit_temperature,
    predict_run_logits,
)
from medkd.models import CalibrationRecord, RunCard, load_model

CALIBRATION_BINS = EvaluationConfig().calibration_bins  # the ECE in the record is comparable to the report's


def site_calibration(model: nn.Module, card: RunCard, images: np.ndarray, labels: np.ndarray) -> dict:
    """Run-card entries re-fitted on a site's labelled images (N, C, H, W) uint8: the calibration (a
    CalibrationRecord), and for binary tasks the threshold by the run's own rule (e.g. Youden) on the re-calibrated
    P(positive)."""
    settings = CalibrationConfig(method=card.calibration.method if card.calibration else "temperature")
    logits = predict_run_logits(model, images, card)
    temperature = fit_temperature(logits, labels, settings)
    record = calibration_record(logits, labels, temperature, settings, CALIBRATION_BINS)
    record = {key.replace("val_", "site_"): value for key, value in record.items()}
    update: dict = {"calibration": CalibrationRecord.model_validate({**record, "fitted_on": "site"})}
    if card.binary:
        rule = ThresholdConfig.model_validate(card.threshold_rule or {})
        update["threshold"] = choose_threshold(labels, calibrated(logits, temperature)[:, 1], rule)
    return update


def site_images(paths: list[Path], preprocessing: Preprocessing) -> tuple[np.ndarray, list[str]]:
    """The readable images under `paths` (files, or folders searched recursively) as a model sees them (N, C, H, W)
    uint8, and one line per file that could not be read."""
    files = [f for p in map(Path, paths) for f in (sorted(p.rglob("*")) if p.is_dir() else [p])
             if is_image_candidate(f)]
    images, problems = [], []
    for file in files:
        try:
            images.append(preprocess(decode_file(file, max_pixels=DEFAULT_MAX_PIXELS), preprocessing))
        except BadImageError as err:
            problems.append(f"{file}: {err.problem}")
    if not images:
        raise DataError(f"no readable images under {', '.join(map(str, paths))}: pass folders of X-ray files")
    return np.stack(images), problems


def calibrate_run(run: Path, site: DataConfig, out: Path, *, show_progress: bool = True) -> tuple[Path, dict]:
    """`medkd calibrate`: a new run folder OUT whose temperature and threshold were fitted on every labelled image
    of `site` (whatever its splits); the record says what it was calibrated on. Returns (OUT, its calibration)."""
    model, card = load_model(run)
    images, labels, classes = labelled_images(site, show_progress=show_progress)
    if classes != card.classes:
        raise DataError(f"{site.path} has classes {classes}, the model {card.classes}: a site set needs "
                        "the same class folders as the training data")
    update = site_calibration(model, card, images, labels)
    counts = dict(zip(classes, np.bincount(labels, minlength=len(classes)).tolist()))
    update["calibration"] = CalibrationRecord.model_validate({**update["calibration"].model_dump(), "site": {
        "path": str(Path(site.path).resolve()), "images": int(len(labels)), "class_counts": counts}})
    update["validation_calibration"] = card.calibration  # what training fitted, kept for comparison
    update["validation_threshold"] = card.threshold
    adapted = write_derived_run(run, out, model, card.model_copy(update=update))
    return adapted, {key: value.model_dump() if hasattr(value, "model_dump") else value
                     for key, value in update.items()}
