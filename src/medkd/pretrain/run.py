"""One pretraining run: unlabelled images (never the test split) -> SSL on the training engine -> a backbone
checkpoint that `weights: PATH` accepts everywhere (train, distill, recipes)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader

from medkd.data import DataConfig, DataError, unlabelled_images
from medkd.data import record_data_location
from medkd.device import loader_workers
from medkd.engine import EpochMetricsCSV, build_trainer
from medkd.models import classifier_name, create_model, normalisation
from medkd.pretrain.config import PretrainConfig
from medkd.pretrain.methods import SelfSupervised
from medkd.pretrain.views import TwoViews, view_transform

log = logging.getLogger(__name__)
BACKBONE = "backbone.safetensors"


def headless(model: nn.Module) -> tuple[nn.Module, int]:
    """`model` with its classifier replaced by an identity, and the feature width the classifier took."""
    head = classifier_name(model)
    layer = model.get_submodule(head)
    linear = layer if isinstance(layer, nn.Linear) else next(m for m in layer.modules() if isinstance(m, nn.Linear))
    parent, _, name = head.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, nn.Identity())
    return model, linear.in_features


def pretrain(data_config: DataConfig, settings: PretrainConfig, out: str | Path, *,
             show_progress: bool = True) -> Path:
    """Self-supervised pretraining of `settings.model` on the source's non-test images into run folder `out`
    (OUT/backbone.safetensors: the model's weights without its classifier). Re-running continues a killed run."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump({"data": data_config.model_dump(mode="json"),
                                                     "pretrain": settings.model_dump(mode="json")}, sort_keys=False))
    record_data_location(out, data_config.path)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    images = unlabelled_images(data_config, show_progress=show_progress)
    if len(images) < settings.batch_size:
        raise DataError(f"{len(images)} unlabelled images, fewer than batch_size {settings.batch_size}: "
                         "lower pretrain.batch_size")
    L.seed_everything(settings.seed, workers=True, verbose=False)
    in_chans = data_config.preprocessing.channels
    # the classifier is dropped below, so its class count does not matter
    model = create_model(settings.model, num_classes=2, in_chans=in_chans, weights=settings.weights, **settings.model_args)
    backbone, features = headless(model)
    if settings.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    module = SelfSupervised(backbone, features, settings)
    mean, std = normalisation(in_chans, settings.model)
    views = TwoViews(images, view_transform(settings.views, data_config.preprocessing.size, mean, std))
    workers = loader_workers(settings.num_workers, settings.accelerator)
    loader = DataLoader(views, batch_size=settings.batch_size, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0)
    checkpoints = out / "checkpoints"
    callbacks = [ModelCheckpoint(dirpath=checkpoints, filename="last", enable_version_counter=False),
                 EpochMetricsCSV(out / "metrics.csv", metric_columns=("ssl_loss",))]
    trainer = build_trainer(settings, out, callbacks, show_progress=show_progress)
    resume = checkpoints / "last.ckpt"
    trainer.fit(module, train_dataloaders=loader, ckpt_path=resume if resume.exists() else None)

    # the factory model's state dict minus its classifier (an identity now): weights: PATH leaves a new head
    state = {k: v.detach().contiguous().cpu() for k, v in module.backbone.state_dict().items()}
    save_file(state, out / BACKBONE)
    (out / "pretrain.json").write_text(json.dumps({
        "architecture": settings.model, "model_args": settings.model_args, "in_chans": in_chans,
        "method": settings.method, "images": len(images), "epochs_trained": trainer.current_epoch,
        "backbone": BACKBONE, "preprocessing": data_config.preprocessing.model_dump()}, indent=2))
    log.info("backbone written to %s (use it as weights: %s)", out / BACKBONE, out / BACKBONE)
    return out
