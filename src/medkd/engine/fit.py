"""One training run, start to finish: data -> model -> Lightning fit (resumable) -> run folder. What differs
between transfer modes is the mode's (engine.transfer); what differs for distillation is the extension's."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Protocol

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from medkd.data import DataConfig, PreparedData, prepare, record_data_location, resolve_preprocessing
from medkd.device import Placement, images_on_device, is_primary_process, loader_workers
from medkd.engine.augment import build_augmentation
from medkd.engine.callbacks import EpochMetricsCSV
from medkd.engine.config import TrainConfig
from medkd.engine.datamodule import TensorDataModule, ViewPlan, split_tensors
from medkd.engine.finish import best_epoch_val_auc, calibrate_on_validation, feature_guard, run_card
from medkd.engine.losses import class_weights
from medkd.engine.module import ClassifierModule
from medkd.engine.trainer import build_trainer, lightning_notices_silenced
from medkd.engine.transfer import TransferMode, transfer_mode
from medkd.files import (
    BEST,
    BEST_CHECKPOINT,
    CHECKPOINTS,
    CONFIG,
    LAST,
    LAST_CHECKPOINT,
    METRICS,
    RESUME_CHECKPOINT,
    SKIPPED_FILES,
    write_yaml,
)
from medkd.models import SourceRecord, normalisation, read_state_dict, save_model

log = logging.getLogger(__name__)
SELECTION_MODE = {"val_auc": "max", "val_loss": "min"}  # the best checkpoint: chosen on validation, never on test


class FitExtension(Protocol):
    """Turns supervised training into another kind of run (e.g. distillation): fit() calls these hooks."""

    section: str  # the key of its settings in the run's config.yaml
    metric_columns: tuple[str, ...]  # extra per-epoch columns of metrics.csv
    train_views: ViewPlan  # how the train split's extra tensors follow the augmentation (set by build_module)

    def settings_dump(self) -> dict:
        """Its settings, for config.yaml."""

    def build_module(self, model: torch.nn.Module, settings: TrainConfig, data: PreparedData, splits: dict, *,
                     mean: list[float], std: list[float], class_weight: torch.Tensor | None,
                     out: Path, backbone_lr_scale: float) -> ClassifierModule:
        """The Lightning module to train `model` with; may append per-sample tensors to `splits`."""

    def card_entries(self) -> dict:
        """Entries added to the run's card (model.json), e.g. its distillation record."""

    def finish(self, out: Path, model: torch.nn.Module, data: PreparedData) -> None:
        """Called once the run folder holds the final model."""


def fit(data_config: DataConfig, settings: TrainConfig, out: str | Path, *, extension: FitExtension | None = None,
        show_progress: bool = True) -> Path:
    """Train `settings.model` on `data_config` into run folder `out`; re-running continues a killed run.

    The model is chosen on validation (`settings.select_on`); at the end the run folder holds the best and last
    weights with their card (model.json), calibrated on validation, with the decision threshold (binary tasks)
    and the out-of-distribution guard. In a distributed run only global rank 0 writes the run folder.

    Parameters
    ----------
    data_config : DataConfig
        The data; its working size is resolved first (config.yaml and model.json record it).
    settings : TrainConfig
        The model, its starting weights and transfer mode, optimisation, augmentation and devices.
    out : str or Path
        The run folder: config.yaml, metrics.csv, checkpoints, logs and, at the end, the model.
    extension : FitExtension, optional
        Makes the run another kind (e.g. distillation); only with a mode that trains the backbone.
    show_progress : bool, default True
        Progress bars, on the primary process only.

    Returns
    -------
    Path
        The run folder `out`.

    Raises
    ------
    ValueError
        For an extension with a mode that trains the head alone.
    DataError
        When the data cannot be found or read.
    ModelError
        When the model or its starting weights cannot be built or loaded.
    """
    out = Path(out)
    mode = transfer_mode(settings)
    if extension is not None and not mode.trains_backbone:
        raise ValueError(f"{extension.section} trains the whole student: transfer {settings.transfer.name} trains "
                         "its head alone (use scratch or finetune)")
    primary = is_primary_process()  # of a distributed run, only global rank 0 writes the run folder
    show_progress = show_progress and primary
    data_config = resolve_preprocessing(data_config)  # config.yaml and model.json record the size the run works at
    if primary:
        record_settings(out, data_config, settings, extension)
    if settings.runtime.threads:
        torch.set_num_threads(settings.runtime.threads)
    data = prepare_run_data(data_config, out, primary=primary, show_progress=show_progress)
    # before seeding: a resumed run whose earlier step is finished draws the same random numbers as an unbroken one
    mode.before_training(data_config, out, show_progress=show_progress)
    L.seed_everything(settings.seed, workers=True, verbose=False)
    model = mode.build_model(data_config.preprocessing.input_channels, data.classes, out)
    splits = {split: split_tensors(data, split) for split in ("train", "val")}
    settings = with_min_steps(settings, len(splits["train"][1]))
    placement = Placement.of(settings.runtime)
    module = training_module(model, settings, mode, data, splits, extension, out, placement)
    trainer = train(module, splits, settings, mode, extension, out, show_progress=show_progress)
    try:
        if trainer.is_global_zero:  # of a distributed run, rank 0 alone calibrates and writes the final model
            write_final_model(out, trainer, module, model, settings, mode, data_config, data, extension=extension,
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


def with_min_steps(settings: TrainConfig, train_images: int) -> TrainConfig:
    """`settings` with enough epochs for `settings.min_steps` optimiser steps (a tiny train split)."""
    if not settings.min_steps:
        return settings
    steps_per_epoch = math.ceil(train_images / settings.batch_size)
    return settings.model_copy(update={"epochs": max(settings.epochs, math.ceil(settings.min_steps / steps_per_epoch))})


def training_module(model: torch.nn.Module, settings: TrainConfig, mode: TransferMode, data: PreparedData,
                    splits: dict, extension: FitExtension | None, out: Path, placement: Placement) -> ClassifierModule:
    """What Lightning trains: the part of `model` the transfer mode trains (a linear probe's head on cached
    features: `splits` then hold the features), or the extension's module (e.g. a student with its teacher)."""
    mean, std = normalisation(data.config.preprocessing.input_channels, settings.model, settings.weights)
    counts = torch.bincount(splits["train"][1], minlength=len(data.classes)).numpy()
    weight = class_weights(counts, settings.loss.class_weights)
    trained = mode.trained_part(model, data, splits, mean=mean, std=std, placement=placement)
    lr_scale = mode.backbone_lr_scale()
    if trained is not model:  # a part on precomputed inputs: no normalisation
        return ClassifierModule(trained, settings, class_weight=weight, backbone_lr_scale=lr_scale)
    if settings.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if extension is None:
        return ClassifierModule(model, settings, mean=mean, std=std, class_weight=weight, backbone_lr_scale=lr_scale)
    return extension.build_module(model, settings, data, splits, mean=mean, std=std, class_weight=weight, out=out,
                                  backbone_lr_scale=lr_scale)


def train(module: ClassifierModule, splits: dict, settings: TrainConfig, mode: TransferMode,
          extension: FitExtension | None, out: Path, *, show_progress: bool) -> L.Trainer:
    """Lightning's fit of `module` on `splits`, checkpointing into `out` and resuming from its last checkpoint."""
    runtime = settings.runtime
    datamodule = TensorDataModule(splits, settings.batch_size, sampler=settings.sampler,
                                  augment=settings.augment if mode.trains_backbone else None,
                                  num_workers=loader_workers(runtime.num_workers, runtime.accelerator),
                                  train_views=extension.train_views if extension is not None else ViewPlan(),
                                  images_on_device=images_on_device(runtime.images_on_device, runtime.accelerator))
    checkpoints = out / CHECKPOINTS
    # Lightning's save_last only refreshes last.ckpt when a best checkpoint is saved: keep "last" separately.
    monitor, direction = settings.select_on, SELECTION_MODE[settings.select_on]
    callbacks = [ModelCheckpoint(dirpath=checkpoints, filename=BEST_CHECKPOINT, monitor=monitor, mode=direction),
                 ModelCheckpoint(dirpath=checkpoints, filename=LAST_CHECKPOINT, enable_version_counter=False),
                 EpochMetricsCSV(out / METRICS, extension.metric_columns if extension else ())]
    if settings.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=direction, patience=settings.early_stopping_patience))
    trainer = build_trainer(runtime, settings.epochs, out, callbacks, show_progress=show_progress)
    resume = out / RESUME_CHECKPOINT
    if resume.exists():
        log.info("resuming %s from %s", out, resume)
    with lightning_notices_silenced():
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume if resume.exists() else None)
    return trainer


def write_final_model(out: Path, trainer: L.Trainer, module: ClassifierModule, model: torch.nn.Module,
                      settings: TrainConfig, mode: TransferMode, data_config: DataConfig, data: PreparedData, *,
                      extension: FitExtension | None, device: torch.device) -> None:
    """The end of a run: the best (on validation) and last weights with their card, calibrated and with the
    out-of-distribution guard, into run folder `out`. `model` is the whole network; `module` what was trained."""
    best = trainer.checkpoint_callback
    assert best is None or isinstance(best, ModelCheckpoint)  # train() gives the trainer ModelCheckpoints only
    resume = out / RESUME_CHECKPOINT
    best_path = Path(best.best_model_path or resume) if best is not None else resume
    entries = {**mode.card_entries(out), **(extension.card_entries() if extension else {})}
    card = run_card(settings, data_config, data.classes, model, entries,
                    source=SourceRecord(name=data.source.source, settings=data.source.source_settings),
                    epochs_trained=trainer.current_epoch, best_checkpoint=best_path.name,
                    selected_on=settings.select_on, best_val_auc=best_epoch_val_auc(out, best_path))
    trained = module.model  # the whole network, or the part the mode trained (its weights live in `model`)
    for filename, checkpoint in ((LAST, resume), (BEST, best_path)):
        trained.load_state_dict({k.removeprefix("model."): v for k, v in read_state_dict(checkpoint).items()
                                 if k.startswith("model.")})
        if filename == BEST:
            card = calibrate_on_validation(model, data, card, settings.calibration, settings.threshold, device)
            guard = feature_guard(model, data, card, settings.guard, build_augmentation(settings.augment),
                                  settings.seed, device, out)
            card = card.model_copy(update={"ood": guard})
        save_model(out, model, card, filename)
    if extension is not None:
        extension.finish(out, model, data)
