"""A frozen backbone's features computed once per (model, weights, data, resolution) and cached: what a linear
probe trains on, what its evaluation and a probe teacher's logits are computed from (its head on them)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from medkd.data import PreparedData, cache_root, file_stat
from medkd.evaluation.predict import predict_logits
from medkd.files import CONFIG, fingerprint, one_writer
from medkd.models import classifier_name, headless

log = logging.getLogger(__name__)
FEATURE_FORMAT = 1


def weights_identity(weights: str, seed: int, source: str | None = None) -> list:
    """What identifies a backbone's starting weights: the literal (with the seed, for a random backbone: each
    seed draws its own; with where they came from, for pretrained ones), or a file's path, size and mtime."""
    if weights == "none":
        return [weights, seed]
    if weights == "imagenet":
        return [weights] if source is None else [weights, source]
    if not os.path.exists(weights):
        return [weights]
    return file_stat(Path(weights).resolve())


def backbone_identity(settings, in_chans: int, source: str | None) -> dict:
    """What identifies the frozen backbone of a linear probe with TrainConfig `settings` (architecture, its
    arguments, input channels, starting weights): the features cache key's model part, for the probe's own run and
    for anyone reading its features later (a probe teacher's logits)."""
    return {"model": settings.model, "args": settings.model_args, "in_chans": in_chans,
            "weights": weights_identity(settings.weights, settings.seed, source)}


def run_backbone_identity(folder: str | Path, sidecar: dict) -> dict | None:
    """The frozen backbone's identity (backbone_identity) of a linear-probe run folder, whose features its training
    cached; None for a run that trained its backbone."""
    if sidecar.get("transfer") != "linear":
        return None
    train = yaml.safe_load((Path(folder) / CONFIG).read_text())["train"]
    return {"model": train["model"], "args": train.get("model_args") or {}, "in_chans": sidecar["in_chans"],
            "weights": weights_identity(train["weights"], train["seed"], (sidecar.get("pretrained") or {}).get("source"))}


def probe_logits(model: nn.Module, identity: dict, sidecar: dict, data: PreparedData, split: str, *,
                 device: torch.device, bf16: bool = False) -> torch.Tensor:
    """(N, C) logits of a linear-probe run's model on `split`: its trained head on its frozen backbone's features,
    read from the features cache (extracted now when absent, e.g. the test split or another precision). The same
    as the whole network's forward pass, without the pass."""
    norm = sidecar["normalisation"]
    features, _ = cached_features(model, identity, data, split, mean=norm["mean"], std=norm["std"],
                                  precision_bf16=bf16, device=device)
    head = model.get_submodule(classifier_name(model))
    with torch.no_grad():
        return head.to(device)(features.to(device)).float().cpu()


def cached_features(model: nn.Module, identity: dict, data: PreparedData, split: str, *, mean: list[float],
                    std: list[float], precision_bf16: bool,
                    device: torch.device) -> tuple[torch.Tensor, bool]:
    """Features of every image of `split` from `model`'s backbone, extracted on `device`; (features, True) when
    read from the cache."""
    key = fingerprint({"format": FEATURE_FORMAT, "model": identity, "images": data.split_fingerprint(split),
                       "mean": mean, "std": std, "bf16": precision_bf16}, length=20)
    path = cache_root(data.config) / "features" / f"{key}.npy"
    with one_writer(path):
        if path.exists():
            features = torch.from_numpy(np.load(path))
            log.info("features of %s (%d images) read from cache %s: feature extraction skipped", split,
                     len(features), path)
            return features, True
        images, _ = data.split(split)
        features = predict_logits(headless(model).to(memory_format=torch.channels_last), images, mean=mean, std=std,
                                  bf16=precision_bf16, device=device)
        staging = path.with_suffix(f".tmp-{os.getpid()}.npy")
        np.save(staging, features.numpy())
        staging.replace(path)
    log.info("features of %s (%d images) extracted and cached in %s", split, len(images), path)
    return features, False
