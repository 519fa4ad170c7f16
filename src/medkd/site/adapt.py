"""Adapting a trained model to a site: re-fit its calibration temperature and decision threshold on the site's
labelled images; or, from the site's unlabelled images, re-estimate its batch-norm statistics (AdaBN: Li et al.,
2016, "Revisiting Batch Normalization For Practical Domain Adaptation") or its class prior (site.prior: Saerens et
al., 2002). Each writes a new run folder; the original run is never changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
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
    prepare,
    preprocess,
    run_data_config,
)
from medkd.evaluation import (
    CalibrationConfig,
    ThresholdConfig,
    calibrated,
    calibration_record,
    choose_threshold,
    fit_temperature,
    predict_run_logits,
)
from medkd.files import CONFIG, DATA_LOCATION, OOD_GUARD
from medkd.models import (
    CalibrationRecord,
    ModelError,
    RunCard,
    classifier_name,
    load_model,
    reestimate_batchnorm,
    save_model,
)
from medkd.site.prior import estimate_site_prior, training_prior

CALIBRATION_BINS = 15  # as EvaluationConfig's default: the ECE in the record is comparable to the report's


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


def adapt_batch_norm(model: nn.Module, images: np.ndarray, card: RunCard, batch_size: int = 64) -> int:
    """AdaBN: replace every batch-norm layer's running mean and variance by those of `images` (N, C, H, W) uint8,
    an average over batches; returns how many layers were adapted (0: the model has no batch norm)."""
    return reestimate_batchnorm(model, images, card.normalisation, batch_size=batch_size)


def write_adapted_run(source: Path, out: Path, model: nn.Module, card: RunCard) -> Path:
    """A new run folder OUT: `model` and `card`, and the source run's settings, data record and guard."""
    source, out = Path(source), Path(out)
    if out.resolve() == source.resolve():
        raise ValueError(f"{out}: the adapted run needs its own folder; the original run is never changed")
    out.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG, DATA_LOCATION, OOD_GUARD):
        if (source / name).exists():
            shutil.copy2(source / name, out / name)
    save_model(out, model, card.model_copy(update={"adapted_from": str(source.resolve())}))
    return out


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
    adapted = write_adapted_run(run, out, model, card.model_copy(update=update))
    return adapted, {key: value.model_dump() if hasattr(value, "model_dump") else value
                     for key, value in update.items()}


def fold_prior_shift(model: nn.Module, card: RunCard, train_prior: np.ndarray, site_prior: np.ndarray) -> None:
    """Put the re-weighting by site prior / training prior into the classifier's bias, so every consumer of the
    model (evaluate, predict, serve, the exported ONNX graph) gives the site's posteriors: with logits z and
    calibration temperature T, softmax((z + T log(site / train)) / T) is softmax(z / T) re-weighted by the ratio
    and renormalised (site.prior.reweighted)."""
    head = model.get_submodule(classifier_name(model))
    bias = getattr(head, "bias", None)
    if not isinstance(bias, torch.Tensor) or bias.shape != (len(card.classes),):
        raise ModelError(f"{card.architecture}'s classifier ({classifier_name(model)}) has no bias of one value per "
                         "class to carry the prior shift")
    with torch.no_grad():
        bias += card.temperature * torch.as_tensor(np.log(site_prior / train_prior), dtype=bias.dtype)


def prior_shift_run(run: Path, paths: list[Path], out: Path, *, data_path: str | None = None,
                    show_progress: bool = True) -> tuple[Path, dict]:
    """`medkd adapt --method prior-shift`: a new run folder OUT whose probabilities are re-weighted to the class mix
    EM estimates from the site's unlabelled images (`paths`), the training mix read from the run's training split
    (its data where the run found it, or `data_path`). The validation threshold is kept: on the re-weighted
    probabilities it means what it meant in validation, if the shift is in the class mix alone. Returns (OUT, the
    adaptation record)."""
    model, card = load_model(run)
    images, problems = site_images(paths, card.preprocessing)
    data = prepare(run_data_config(Path(run), data_path), show_progress=show_progress)
    train_prior = training_prior(data.samples, len(card.classes))
    probabilities = calibrated(predict_run_logits(model, images, card), card.temperature)
    estimate = estimate_site_prior(probabilities, train_prior)
    fold_prior_shift(model, card, estimate.train_prior, estimate.site_prior)
    record = {"method": "prior-shift", "images": int(len(images)), "unreadable": len(problems),
              "paths": [str(Path(p).resolve()) for p in paths], "classes": card.classes,
              "train_prior": estimate.train_prior.round(6).tolist(),
              "site_prior": estimate.site_prior.round(6).tolist(),
              "em_iterations": estimate.iterations, "em_converged": estimate.converged}
    return write_adapted_run(run, out, model, card.model_copy(update={"adaptation": record})), record


def adapt_run(run: Path, paths: list[Path], out: Path) -> tuple[Path, dict]:
    """`medkd adapt`: a new run folder OUT whose batch-norm statistics are those of the site's unlabelled images
    (AdaBN). Its temperature and threshold are still validation's: re-fit them with `medkd calibrate` where the
    site has labels, since adaptation can move them. Returns (OUT, the adaptation record)."""
    model, card = load_model(run)
    images, problems = site_images(paths, card.preprocessing)
    layers = adapt_batch_norm(model, images, card)
    if layers == 0:
        raise ModelError(f"{card.architecture} has no batch-norm layer: AdaBN has nothing to adapt")
    record = {"method": "adabn", "images": int(len(images)), "layers": layers, "unreadable": len(problems),
              "paths": [str(Path(p).resolve()) for p in paths]}
    return write_adapted_run(run, out, model, card.model_copy(update={"adaptation": record})), record
