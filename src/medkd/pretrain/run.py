"""One pretraining run: unlabelled images (never the test split) -> SSL on the training engine -> a backbone
checkpoint that `weights: PATH` accepts everywhere (train, distill, recipes)."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from medkd.data import DataConfig, DataError, record_data_location, resolve_preprocessing, unlabelled_images
from medkd.device import is_primary_process, loader_workers
from medkd.engine import EpochMetricsCSV, build_trainer, lightning_notices_silenced
from medkd.files import (
    BACKBONE,
    CHECKPOINTS,
    CONFIG,
    LAST_CHECKPOINT,
    METRICS,
    PRETRAIN_REPORT,
    RESUME_CHECKPOINT,
    staged,
    write_json,
    write_yaml,
)
from medkd.models import create_model, feature_width, headless, normalisation
from medkd.pretrain.config import PretrainConfig
from medkd.pretrain.methods import SelfSupervised
from medkd.pretrain.views import TwoViews, view_transform

log = logging.getLogger(__name__)


def pretrain(data_config: DataConfig, settings: PretrainConfig, out: str | Path, *,
             show_progress: bool = True) -> Path:
    """Self-supervised pretraining of `settings.model` on the source's non-test images into run folder `out`
    (OUT/backbone.safetensors: the model's weights without its classifier). Re-running continues a killed run."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data_config = resolve_preprocessing(data_config)
    primary = is_primary_process()  # of a distributed run, only global rank 0 writes the run folder
    show_progress = show_progress and primary
    if primary:
        write_yaml(out / CONFIG, {"data": data_config.model_dump(mode="json"),
                                  "pretrain": settings.model_dump(mode="json")})
        record_data_location(out, data_config.path)
    runtime = settings.runtime
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    images = unlabelled_images(data_config, show_progress=show_progress)
    if len(images) < settings.batch_size:
        raise DataError(f"{len(images)} unlabelled images, fewer than batch_size {settings.batch_size}: "
                         "lower pretrain.batch_size")
    L.seed_everything(settings.seed, workers=True, verbose=False)
    in_chans = data_config.preprocessing.input_channels
    # the classifier is dropped below, so its class count does not matter
    model = create_model(settings.model, num_classes=2, in_chans=in_chans, weights=settings.weights,
                         **settings.model_args)
    backbone, features = headless(model).train(), feature_width(model)
    if runtime.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    module = SelfSupervised(backbone, features, settings)
    mean, std = normalisation(in_chans, settings.model)
    assert data_config.preprocessing.size is not None  # resolved above (resolve_preprocessing)
    views = TwoViews(images, view_transform(settings.views, data_config.preprocessing.size, mean, std))
    workers = loader_workers(runtime.num_workers, runtime.accelerator)
    loader = DataLoader(views, batch_size=settings.batch_size, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0)
    checkpoints = out / CHECKPOINTS
    callbacks = [ModelCheckpoint(dirpath=checkpoints, filename=LAST_CHECKPOINT, enable_version_counter=False),
                 EpochMetricsCSV(out / METRICS, metric_columns=("ssl_loss",))]
    trainer = build_trainer(runtime, settings.epochs, out, callbacks, show_progress=show_progress)
    resume = out / RESUME_CHECKPOINT
    with lightning_notices_silenced():
        trainer.fit(module, train_dataloaders=loader, ckpt_path=resume if resume.exists() else None)

    try:
        if trainer.is_global_zero:
            write_backbone(out, module, settings, data_config, images=len(images), epochs=trainer.current_epoch)
    finally:  # the other processes wait: a study's next stage starts from the backbone
        trainer.strategy.barrier("medkd: backbone written")
    return out


def write_backbone(out: Path, module: SelfSupervised, settings: PretrainConfig, data_config: DataConfig, *,
                   images: int, epochs: int) -> None:
    """OUT/backbone.safetensors and its report: the factory model's state dict minus its classifier (an identity
    now), so that weights: PATH leaves a new head."""
    state = {k: v.detach().contiguous().cpu() for k, v in module.backbone.state_dict().items()}
    with staged(out / BACKBONE) as staging:
        save_file(state, staging)
    write_json(out / PRETRAIN_REPORT, {
        "architecture": settings.model, "model_args": settings.model_args,
        "in_chans": data_config.preprocessing.input_channels, "method": settings.method, "images": images,
        "epochs_trained": epochs, "backbone": BACKBONE, "preprocessing": data_config.preprocessing.model_dump()})
    log.info("backbone written to %s (use it as weights: %s)", out / BACKBONE, out / BACKBONE)
