"""One training run, start to finish: data -> model -> Lightning fit (resumable) -> run folder."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Protocol

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torchvision.transforms import v2

from medkd.data import DataConfig, PreparedData, prepare, record_data_location, resolve_preprocessing
from medkd.device import Placement, images_on_device, is_primary_process, loader_workers
from medkd.engine.augment import build_augmentation
from medkd.engine.callbacks import EPOCH_COLUMNS, EpochMetricsCSV
from medkd.engine.config import TrainConfig
from medkd.engine.datamodule import TensorDataModule, ViewPlan, augmented_view, split_tensors
from medkd.engine.losses import class_weights, classification_loss
from medkd.engine.module import ClassifierModule, auroc
from medkd.engine.trainer import build_trainer, lightning_notices_silenced
from medkd.engine.wise_ft import Endpoints, WiseFTError, alpha_curve
from medkd.evaluation import (
    CalibrationConfig,
    EvaluationConfig,
    GuardConfig,
    ThresholdConfig,
    backbone_identity,
    cached_features,
    calibrated,
    calibration_record,
    choose_threshold,
    fit_guard,
    fit_temperature,
    predict_run_logits,
    predict_with_features,
)
from medkd.files import (
    BEST,
    BEST_CHECKPOINT,
    CHECKPOINTS,
    CONFIG,
    LAST,
    LAST_CHECKPOINT,
    METRICS,
    PROBE,
    PROBE_SEARCH,
    PROBE_SEARCH_SCORES,
    RESUME_CHECKPOINT,
    SKIPPED_FILES,
    WISE_FT_CURVE,
    write_yaml,
)
from medkd.models import (
    CalibrationRecord,
    GuardRecord,
    Normalisation,
    PretrainedRecord,
    ProbeRecord,
    ProbeSearchRecord,
    RunCard,
    SourceRecord,
    WiseFTRecord,
    classifier_name,
    create_model,
    normalisation,
    pretrained_config,
    read_state_dict,
    save_model,
    weight_tags,
)

log = logging.getLogger(__name__)
SELECTION_MODE = {"val_auc": "max", "val_loss": "min"}  # the best checkpoint: chosen on validation, never on test
CALIBRATION_BINS = EvaluationConfig().calibration_bins  # the card's ECE is binned as evaluation bins it


class FitExtension(Protocol):
    """Turns supervised training into another kind of run (e.g. distillation): fit() calls these hooks."""

    section: str  # the key of its settings in the run's config.yaml
    metric_columns: tuple[str, ...]  # extra per-epoch columns of metrics.csv
    train_views: ViewPlan  # how the train split's extra tensors follow the augmentation (set by build_module)

    def settings_dump(self) -> dict:
        """Its settings, for config.yaml."""

    def build_module(self, model: torch.nn.Module, settings: TrainConfig, data: PreparedData, splits: dict, *,
                     mean: list[float], std: list[float], class_weight: torch.Tensor | None,
                     out: Path) -> ClassifierModule:
        """The Lightning module to train `model` with; may append per-sample tensors to `splits`."""

    def card_entries(self) -> dict:
        """Entries added to the run's card (model.json), e.g. its distillation record."""

    def finish(self, out: Path, model: torch.nn.Module, data: PreparedData) -> None:
        """Called once the run folder holds the final model."""


def fit(data_config: DataConfig, settings: TrainConfig, out: str | Path, *, extension: FitExtension | None = None,
        show_progress: bool = True) -> Path:
    """Train `settings.model` on `data_config` into run folder `out`; re-running continues a killed run.

    The model is chosen on validation AUC; at the end the run folder holds the best and last weights with their
    card (model.json), calibrated on validation, with the decision threshold (binary tasks) and the
    out-of-distribution guard. In a distributed run only global rank 0 writes the run folder.

    Parameters
    ----------
    data_config : DataConfig
        The data; its working size is resolved first (config.yaml and model.json record it).
    settings : TrainConfig
        The model, its starting weights and transfer mode, optimisation, augmentation and devices.
    out : str or Path
        The run folder: config.yaml, metrics.csv, checkpoints, logs and, at the end, the model.
    extension : FitExtension, optional
        Makes the run another kind (e.g. distillation); not with transfer linear.
    show_progress : bool, default True
        Progress bars, on the primary process only.

    Returns
    -------
    Path
        The run folder `out`.

    Raises
    ------
    ValueError
        For an extension with transfer linear.
    DataError
        When the data cannot be found or read.
    ModelError
        When the model or its starting weights cannot be built or loaded.
    """
    out = Path(out)
    if extension is not None and settings.transfer in ("linear", "wise-ft"):
        raise ValueError(f"{extension.section} trains the whole student: use transfer scratch or finetune, not "
                         f"{settings.transfer}")
    primary = is_primary_process()  # of a distributed run, only global rank 0 writes the run folder
    show_progress = show_progress and primary
    data_config = resolve_preprocessing(data_config)  # config.yaml and model.json record the size the run works at
    if primary:
        record_settings(out, data_config, settings, extension)
    if settings.runtime.threads:
        torch.set_num_threads(settings.runtime.threads)
    data = prepare_run_data(data_config, out, primary=primary, show_progress=show_progress)
    if settings.transfer == "wise-ft":  # nothing trains: the weights are mixed
        if primary:
            write_wise_ft_model(out, settings, data_config, data, device=Placement.of(settings.runtime).device)
        return out
    # before seeding: a resumed run whose probe is finished draws the same random numbers as an unbroken one
    probe = (linear_probe(data_config, settings, out, show_progress=show_progress)
             if settings.transfer == "lp-ft" else None)
    if settings.transfer == "linear" and settings.probe_search is not None:
        settings = searched_weight_decay(data_config, settings, out, primary=primary, show_progress=show_progress)
    L.seed_everything(settings.seed, workers=True, verbose=False)
    model = build_model(settings, data_config.preprocessing.input_channels, data.classes, probe)
    splits = {split: split_tensors(data, split) for split in ("train", "val")}
    settings = with_min_steps(settings, len(splits["train"][1]))
    placement = Placement.of(settings.runtime)
    module = training_module(model, settings, data, splits, extension, out, placement)
    trainer = train(module, splits, settings, extension, out, show_progress=show_progress)
    try:
        if trainer.is_global_zero:  # of a distributed run, rank 0 alone calibrates and writes the final model
            write_final_model(out, trainer, module, model, settings, data_config, data, extension=extension,
                              device=placement.device)
    finally:  # the other processes wait: what follows (an lp-ft fine-tune, a study's next stage) reads it
        trainer.strategy.barrier("medkd: final model written")
    return out


def record_settings(out: Path, data_config: DataConfig, settings: TrainConfig, extension: FitExtension | None) -> None:
    """config.yaml (the resolved settings) and where the data was found, into run folder `out`."""
    out.mkdir(parents=True, exist_ok=True)
    resolved = {"data": data_config.model_dump(mode="json"), "train": settings.model_dump(mode="json")}
    if extension is not None:
        resolved[extension.section] = extension.settings_dump()
    write_yaml(out / CONFIG, resolved)
    record_data_location(out, data_config.path)  # evaluate and export find the data from any working folder


def prepare_run_data(data_config: DataConfig, out: Path, *, primary: bool, show_progress: bool) -> PreparedData:
    """The decoded, split data; the files that could not be read listed in the run folder."""
    data = prepare(data_config, show_progress=show_progress)
    if primary:
        out.mkdir(parents=True, exist_ok=True)
        data.skipped.to_csv(out / SKIPPED_FILES, index=False)
    return data


def build_model(settings: TrainConfig, in_chans: int, classes: list[str], probe: Path | None) -> torch.nn.Module:
    """The network to train, from its starting weights; an lp-ft run's from its probe's trained head."""
    model = create_model(settings.model, num_classes=len(classes), in_chans=in_chans, weights=settings.weights,
                         **settings.model_args)
    if probe is not None:
        model.load_state_dict(read_state_dict(probe / BEST))  # the same backbone, the probe's trained head
    return model


def with_min_steps(settings: TrainConfig, train_images: int) -> TrainConfig:
    """`settings` with enough epochs for `settings.min_steps` optimiser steps (a tiny train split)."""
    if not settings.min_steps:
        return settings
    steps_per_epoch = math.ceil(train_images / settings.batch_size)
    return settings.model_copy(update={"epochs": max(settings.epochs, math.ceil(settings.min_steps / steps_per_epoch))})


def training_module(model: torch.nn.Module, settings: TrainConfig, data: PreparedData, splits: dict,
                    extension: FitExtension | None, out: Path, placement: Placement) -> ClassifierModule:
    """What Lightning trains: a linear probe's head on cached backbone features (`splits` then hold the features),
    the whole network, or the extension's module (e.g. a student with its teacher)."""
    mean, std = normalisation(data.config.preprocessing.input_channels, settings.model, settings.weights)
    counts = torch.bincount(splits["train"][1], minlength=len(data.classes)).numpy()
    weight = class_weights(counts, settings.loss.class_weights)
    runtime = settings.runtime
    if settings.transfer == "linear":
        identity = backbone_identity(settings, data.config.preprocessing.input_channels,
                                     getattr(model, "medkd_weights_source", None))
        for split, (_, labels) in list(splits.items()):
            features, _ = cached_features(model, identity, data, split, mean=mean, std=std,
                                          precision_bf16=placement.bf16, device=placement.device)
            splits[split] = (features, labels)
        return ClassifierModule(model.get_submodule(classifier_name(model)), settings, class_weight=weight)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if extension is None:
        return ClassifierModule(model, settings, mean=mean, std=std, class_weight=weight)
    return extension.build_module(model, settings, data, splits, mean=mean, std=std, class_weight=weight, out=out)


def train(module: ClassifierModule, splits: dict, settings: TrainConfig, extension: FitExtension | None, out: Path, *,
          show_progress: bool) -> L.Trainer:
    """Lightning's fit of `module` on `splits`, checkpointing into `out` and resuming from its last checkpoint."""
    runtime = settings.runtime
    datamodule = TensorDataModule(splits, settings.batch_size, sampler=settings.sampler,
                                  augment=None if settings.transfer == "linear" else settings.augment,
                                  num_workers=loader_workers(runtime.num_workers, runtime.accelerator),
                                  train_views=extension.train_views if extension is not None else ViewPlan(),
                                  images_on_device=images_on_device(runtime.images_on_device, runtime.accelerator))
    checkpoints = out / CHECKPOINTS
    # Lightning's save_last only refreshes last.ckpt when a best checkpoint is saved: keep "last" separately.
    monitor, mode = settings.select_on, SELECTION_MODE[settings.select_on]
    callbacks = [ModelCheckpoint(dirpath=checkpoints, filename=BEST_CHECKPOINT, monitor=monitor, mode=mode),
                 ModelCheckpoint(dirpath=checkpoints, filename=LAST_CHECKPOINT, enable_version_counter=False),
                 EpochMetricsCSV(out / METRICS, extension.metric_columns if extension else ())]
    if settings.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=settings.early_stopping_patience))
    # the per-epoch table: metrics.csv
    trainer = build_trainer(runtime, settings.epochs, out, callbacks, show_progress=show_progress)
    resume = out / RESUME_CHECKPOINT
    if resume.exists():
        log.info("resuming %s from %s", out, resume)
    with lightning_notices_silenced():
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume if resume.exists() else None)
    return trainer


def write_final_model(out: Path, trainer: L.Trainer, module: ClassifierModule, model: torch.nn.Module,
                      settings: TrainConfig, data_config: DataConfig, data: PreparedData, *,
                      extension: FitExtension | None, device: torch.device) -> None:
    """The end of a run: the best (on validation) and last weights with their card, calibrated and with the
    out-of-distribution guard, into run folder `out`. `model` is the whole network; `module` what was trained."""
    best = trainer.checkpoint_callback
    assert best is None or isinstance(best, ModelCheckpoint)  # train() gives the trainer ModelCheckpoints only
    resume = out / RESUME_CHECKPOINT
    best_path = Path(best.best_model_path or resume) if best is not None else resume
    card = run_card(settings, data_config, data.classes, model, out, extension,
                    source=SourceRecord(name=data.source.source, settings=data.source.source_settings),
                    epochs_trained=trainer.current_epoch, best_checkpoint=best_path.name,
                    selected_on=settings.select_on, best_val_auc=best_epoch_val_auc(out, best_path))
    trained = module.model
    whole = model if settings.transfer == "linear" else trained  # a linear probe trained only the head of `model`
    for filename, checkpoint in ((LAST, resume), (BEST, best_path)):
        trained.load_state_dict({k.removeprefix("model."): v for k, v in read_state_dict(checkpoint).items()
                                 if k.startswith("model.")})
        if filename == BEST:
            card = calibrate_on_validation(whole, data, card, settings.calibration, settings.threshold, device)
            augmentation = build_augmentation(settings.augment)
            guard = feature_guard(whole, data, card, settings.guard, augmentation, settings.seed, device, out)
            card = card.model_copy(update={"ood": guard})
        save_model(out, whole, card, filename)
    if extension is not None:
        extension.finish(out, whole, data)


def best_position(scores: pd.Series, select_on: str):
    """The index of the best of `scores` by `select_on`'s direction (SELECTION_MODE), the first of equals."""
    return scores.idxmin() if SELECTION_MODE[select_on] == "min" else scores.idxmax()


def best_epoch_metrics(out: Path, checkpoint: Path) -> pd.Series | None:
    """The run's metrics.csv row (val_auc, val_loss, ...) of the epoch `checkpoint` holds (whatever chose the
    epoch); None when it is not there (a run killed before its first validation)."""
    if not checkpoint.exists() or not (out / METRICS).exists():
        return None
    epoch = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)["epoch"]
    rows = pd.read_csv(out / METRICS)
    validated = rows.loc[rows["epoch"] == epoch].dropna(subset=["val_auc"])
    return validated.iloc[-1] if len(validated) else None


def best_epoch_val_auc(out: Path, checkpoint: Path) -> float | None:
    """Validation AUC of the epoch `checkpoint` holds (see `best_epoch_metrics`); None when it is not there."""
    row = best_epoch_metrics(out, checkpoint)
    return None if row is None else float(row["val_auc"])


def write_wise_ft_model(out: Path, settings: TrainConfig, data_config: DataConfig, data: PreparedData, *,
                        device: torch.device) -> None:
    """A wise-ft run: the lp-ft run `settings.weights` interpolated towards its probe at wise_ft.alpha, calibrated
    and thresholded on validation like a trained model, into run folder `out` (best and last the same weights);
    beside it the scores along the path (WISE_FT_CURVE), for study only."""
    started = time.perf_counter()
    wise = settings.wise_ft
    ends = Endpoints(settings.weights)
    if ends.card.preprocessing != data_config.preprocessing:
        raise WiseFTError(f"{ends.folder} was trained at {ends.card.preprocessing}, this run's data is prepared at "
                          f"{data_config.preprocessing}: give the wise-ft stage the lp-ft stage's data settings")
    log.info("wise-ft: %s between its probe (alpha 0) and fine-tuned model (alpha 1); scores along the path at "
             "alphas %s (validation and test, recorded, not used)", ends.folder, wise.curve)
    alpha_curve(ends, data, wise.curve, batch_size=settings.batch_size, device=device).to_csv(
        out / WISE_FT_CURVE, index=False)
    model = ends.at(wise.alpha, wise.batchnorm, data.split("train")[0], batch_size=settings.batch_size,
                    device=device)
    record = WiseFTRecord(fine_tuned=str(ends.folder), alpha=wise.alpha, batchnorm=wise.batchnorm)
    card = ends.card.model_copy(update={
        "weights": settings.weights, "transfer": settings.transfer, "epochs_trained": 0, "best_checkpoint": None,
        "probe": None, "wise_ft": record, "ood": None, "calibration": None, "threshold": None,
        "source": SourceRecord(name=data.source.source, settings=data.source.source_settings)})
    val_images, val_label_array = data.split("val")
    val_logits = predict_run_logits(model, val_images, card, device=device)  # once: calibration and the row below
    card = calibrate_on_validation(model, data, card, settings.calibration, settings.threshold, device,
                                   val_logits=val_logits)
    val_labels = torch.as_tensor(val_label_array)
    val_auc = float(auroc(val_logits.softmax(dim=1), val_labels))
    card = card.model_copy(update={"best_val_auc": val_auc})
    guard = feature_guard(model, data, card, settings.guard, build_augmentation(settings.augment), settings.seed,
                          device, out)
    card = card.model_copy(update={"ood": guard})
    for filename in (LAST, BEST):
        save_model(out, model, card, filename)
    # metrics.csv's one row: the mixed model's validation scores, and what the step cost (curve included)
    row = {"epoch": 0, "val_loss": float(classification_loss(val_logits, val_labels, settings.loss)),
           "val_auc": val_auc, "val_acc": float((val_logits.argmax(dim=1) == val_labels).float().mean()),
           "seconds": round(time.perf_counter() - started, 3)}
    pd.DataFrame([row], columns=EPOCH_COLUMNS).to_csv(out / METRICS, index=False)


def run_card(settings: TrainConfig, data_config: DataConfig, classes: list[str], model: torch.nn.Module, out: Path,
             extension: FitExtension | None, **trained) -> RunCard:
    """The run's card before calibration: what rebuilds and feeds the model, how it was trained."""
    in_chans = data_config.preprocessing.input_channels
    mean, std = normalisation(in_chans, settings.model, settings.weights)
    card = {"architecture": settings.model, "model_args": settings.model_args, "in_chans": in_chans,
            "classes": classes, "positive_class": classes[1] if len(classes) == 2 else None,
            "preprocessing": data_config.preprocessing, "normalisation": Normalisation(mean=mean, std=std),
            "weights": settings.weights, "transfer": settings.transfer, **trained,
            **(extension.card_entries() if extension else {})}
    if settings.weights in weight_tags(settings.model):
        config = pretrained_config(settings.model, settings.weights)
        card["pretrained"] = PretrainedRecord(source=model.medkd_weights_source, input_size=config.input_size,
                                              mean=list(config.mean), std=list(config.std))
        if data_config.preprocessing.size != config.input_size:
            log.info("%s trains at %d px; its %s weights were trained at %d px", settings.model,
                     data_config.preprocessing.size, settings.weights, config.input_size)
    if settings.transfer == "lp-ft":
        card["probe"] = ProbeRecord(folder=PROBE, best_val_auc=RunCard.read(out / PROBE).best_val_auc)
    if settings.transfer == "linear" and settings.probe_search is not None:
        scores = pd.read_csv(out / PROBE_SEARCH_SCORES)
        on = settings.probe_search.choose_on
        card["probe_search"] = ProbeSearchRecord(
            selected_on=on, weight_decay=settings.optimiser.weight_decay, folder=PROBE_SEARCH,
            scores={f"{row.weight_decay:g}": getattr(row, on) for row in scores.itertuples()})
    return RunCard.model_validate(card)


def searched_weight_decay(data_config: DataConfig, settings: TrainConfig, out: Path, *, primary: bool,
                          show_progress: bool) -> TrainConfig:
    """probe_search: one linear head per candidate weight decay on the cached features (run folders in
    OUT/probe_search, skipped when finished), scored on validation by probe_search.choose_on at the epoch its run kept
    (select_on); OUT's probe_search.csv holds every candidate's validation scores. Returns `settings` with the
    best candidate's weight decay (the first of equals), which the run then trains again in OUT, so that OUT is an
    ordinary run."""
    assert settings.probe_search is not None  # called for a search only
    candidates = settings.model_copy(update={"probe_search": None, "guard": settings.guard.model_copy(
        update={"method": "none"})})  # a candidate is scored, not deployed: no guard to fit
    rows = []
    for weight_decay in settings.probe_search.weight_decay:
        folder = out / PROBE_SEARCH / f"weight_decay_{weight_decay:g}"
        if not (folder / BEST).exists():
            fit(data_config, candidates.model_copy(update={"optimiser": settings.optimiser.model_copy(
                update={"weight_decay": weight_decay})}), folder, show_progress=show_progress)
        chosen = best_epoch_metrics(folder, folder / CHECKPOINTS / str(RunCard.read(folder).best_checkpoint))
        assert chosen is not None  # a finished candidate validated the epoch its checkpoint holds
        rows.append({"weight_decay": weight_decay, "epoch": int(chosen["epoch"]), "val_auc": chosen["val_auc"],
                     "val_loss": chosen["val_loss"]})
    table = pd.DataFrame(rows)
    on = settings.probe_search.choose_on
    weight_decay = float(table.loc[best_position(table[on], on), "weight_decay"])
    table["chosen"] = table["weight_decay"] == weight_decay
    if primary:
        table.to_csv(out / PROBE_SEARCH_SCORES, index=False)
    log.info("probe_search: weight decay %g chosen on %s among %s", weight_decay, on,
             settings.probe_search.weight_decay)
    return settings.model_copy(update={"optimiser": settings.optimiser.model_copy(
        update={"weight_decay": weight_decay})})


def linear_probe(data_config: DataConfig, settings: TrainConfig, out: Path, *, show_progress: bool) -> Path:
    """LP-FT's first step: the head alone on the frozen backbone's cached features, in run folder OUT/probe
    (skipped when finished: a killed lp-ft run resumes after it)."""
    folder = out / PROBE
    if (folder / BEST).exists():
        log.info("lp-ft: linear probe finished before (%s)", folder)
        return folder
    probe = settings.probe
    probe_settings = settings.model_copy(update={
        "transfer": "linear", "epochs": probe.epochs, "min_steps": None, "early_stopping_patience": None,
        "optimiser": settings.optimiser.model_copy(update={"lr": probe.lr, "weight_decay": probe.weight_decay}),
        "schedule": settings.schedule.model_copy(update={"warmup_epochs": 0.0})})
    log.info("lp-ft: training the linear probe (%d epochs on cached features)", probe.epochs)
    return fit(data_config, probe_settings, folder, show_progress=show_progress)


def feature_guard(model: torch.nn.Module, data: PreparedData, card: RunCard, guard_settings: GuardConfig,
                  augmentation: v2.Transform | None, seed: int, device: torch.device, out: Path) -> GuardRecord:
    """Fit the out-of-distribution guard on the training images' features of `guard_settings.features` (with
    `train_views` views of each by the training `augmentation`, seeded by the run's `seed`), its threshold on
    validation; write it into run folder `out`; its card entry (with the DICOM checks; no guard for method:
    none)."""
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
