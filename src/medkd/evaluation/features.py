"""A frozen backbone's features computed once per (model, weights, data, resolution) and cached: what a linear
probe trains on, what its evaluation and a probe teacher's logits are computed from (its head on them)."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import yaml
from torch import nn

from medkd.data import PreparedData, cache_root, file_stat
from medkd.device import feature_engine, inference_batch_size
from medkd.evaluation.predict import predict_logits
from medkd.files import CONFIG, FEATURES_CACHE, fingerprint, one_writer
from medkd.models import RunCard, classifier_name, headless, normalise

log = logging.getLogger(__name__)
FEATURE_FORMAT = 1


def weights_identity(weights: str, seed: int, source: str | None = None) -> list:
    """What identifies a backbone's starting weights: the literal (with the seed, for a random backbone: each
    seed draws its own), a weight tag with where its weights came from (`source`, as the run card records it),
    or a file's path, size and mtime.

    Parameters
    ----------
    weights : str
        none, a weight tag, or a checkpoint path.
    seed : int
        The run's seed (read for none only).
    source : str, optional
        The weights' provider description for a weight tag (model.medkd_weights_source); None otherwise.

    Returns
    -------
    list
        [weights, seed], [weights, source], the file's stat (file_stat) of an existing path, or [weights].
    """
    if weights == "none":
        return [weights, seed]
    if source is not None:  # a registered weight set (imagenet, ...)
        return [weights, source]
    if not os.path.exists(weights):
        return [weights]
    return file_stat(Path(weights).resolve())


def backbone_identity(settings, in_chans: int, source: str | None) -> dict:
    """What identifies the frozen backbone of a linear probe with TrainConfig `settings` (architecture, its
    arguments, input channels, starting weights): the features cache key's model part, for the probe's own run and
    for anyone reading its features later (a probe teacher's logits).

    Parameters
    ----------
    settings : TrainConfig or a namespace of its fields
        Read: model, model_args, weights, seed.
    in_chans : int
        The model's input channels.
    source : str or None
        Where tag weights came from (see `weights_identity`).

    Returns
    -------
    dict
        {"model", "args", "in_chans", "weights"}, JSON-serialisable.
    """
    return {"model": settings.model, "args": settings.model_args, "in_chans": in_chans,
            "weights": weights_identity(settings.weights, settings.seed, source)}


def run_backbone_identity(folder: str | Path, card: RunCard) -> dict | None:
    """The frozen backbone's identity (backbone_identity) of a linear-probe run folder, whose features its training
    cached; None for a run that trained its backbone.

    Parameters
    ----------
    folder : str or Path
        The run folder; its config.yaml is read for a linear probe.
    card : RunCard
        Its card.

    Returns
    -------
    dict or None
    """
    if not card.frozen_backbone:
        return None
    train = yaml.safe_load((Path(folder) / CONFIG).read_text())["train"]  # TrainConfig's fields, as fit() wrote them
    settings = SimpleNamespace(model=train["model"], model_args=train.get("model_args") or {},
                               weights=train["weights"], seed=train["seed"])
    return backbone_identity(settings, card.in_chans, card.pretrained.source if card.pretrained else None)


def probe_logits(model: nn.Module, identity: dict, card: RunCard, data: PreparedData, split: str, *,
                 device: torch.device, bf16: bool = False) -> torch.Tensor:
    """(N, C) logits of a linear-probe run's model on `split`: its trained head on its frozen backbone's features,
    read from the features cache (extracted now when absent, e.g. the test split or another precision). The same
    as the whole network's forward pass, without the pass.

    Parameters
    ----------
    model : nn.Module
        The run's whole network (backbone and trained head); its head is moved to `device`.
    identity : dict
        The frozen backbone's identity (`run_backbone_identity`).
    card : RunCard
        Its normalisation is the features'.
    data : PreparedData
        The run's data.
    split : str
    device : torch.device
        Where features are extracted (when not cached) and the head runs.
    bf16 : bool, default False
        Features extracted in bf16 autocast (cached apart from fp32 ones).

    Returns
    -------
    torch.Tensor of shape (N, C), float32
        On the CPU; C = the run's classes.
    """
    features, _ = cached_features(model, identity, data, split, mean=card.normalisation.mean,
                                  std=card.normalisation.std, precision_bf16=bf16, device=device)
    head = model.get_submodule(classifier_name(model))
    with torch.no_grad():
        return head.to(device)(features.to(device)).float().cpu()


def cached_features(model: nn.Module, identity: dict, data: PreparedData, split: str, *, mean: list[float],
                    std: list[float], precision_bf16: bool, device: torch.device,
                    engine: str | None = None) -> tuple[torch.Tensor, bool]:
    """Features (N, D) of every image of `split` from `model`'s backbone, extracted on `device` by `engine`
    (onnxruntime or torch; default: the device policy's feature_engine); (features, True) when read from the
    cache, whichever engine computed them (they agree to about 1e-5).

    The cache key holds the backbone's identity, the split's images, the normalisation and the precision; the
    cache is under the data's cache folder (features/KEY.npy).

    Parameters
    ----------
    model : nn.Module
        A network with a fully-connected head; its headless copy (`headless`) computes the features.
    identity : dict
        The backbone's identity (`backbone_identity`).
    data : PreparedData
    split : str
    mean, std : list of float of length C
        The normalisation of the uint8 images (N, C, H, W).
    precision_bf16 : bool
        Extract in bf16 autocast (torch engine).
    device : torch.device
        Where the torch engine computes (ONNX Runtime runs on the CPU).
    engine : {"onnxruntime", "torch"}, optional

    Returns
    -------
    features : torch.Tensor of shape (N, D), float32
        On the CPU; D = feature_width(model).
    cached : bool
        True when read from the cache.
    """
    key = fingerprint({"format": FEATURE_FORMAT, "model": identity, "images": data.split_fingerprint(split),
                       "mean": mean, "std": std, "bf16": precision_bf16}, length=20)
    path = cache_root(data.config) / FEATURES_CACHE / f"{key}.npy"
    with one_writer(path):
        if path.exists():
            features = torch.from_numpy(np.load(path))
            log.info("features of %s (%d images) read from cache %s: feature extraction skipped", split,
                     len(features), path)
            return features, True
        images, _ = data.split(split)
        graph = backbone_graph_path(identity, data, images.shape[1:], mean=mean, std=std)
        engine = engine or feature_engine(device, precision_bf16, len(images), graph.exists())
        backbone = headless(model).to(memory_format=torch.channels_last)
        if engine == "onnxruntime":
            session = backbone_session(backbone, graph, images.shape[1:])
            features = predict_onnx(session, images, mean=mean, std=std)
        else:
            features = predict_logits(backbone, images, mean=mean, std=std, bf16=precision_bf16, device=device)
        staging = path.with_suffix(f".tmp-{os.getpid()}.npy")
        np.save(staging, features.numpy())
        staging.replace(path)
    log.info("features of %s (%d images) extracted (%s) and cached in %s", split, len(images), engine, path)
    return features, False


def backbone_graph_path(identity: dict, data: PreparedData, image_shape: tuple[int, ...], *, mean: list[float],
                        std: list[float]) -> Path:
    """Where the features cache keeps the backbone's exported ONNX graph for inputs of `image_shape` (C, H, W)."""
    key = fingerprint({"format": FEATURE_FORMAT, "model": identity, "input": list(image_shape), "mean": mean,
                       "std": std}, length=20)
    return cache_root(data.config) / FEATURES_CACHE / f"{key}.onnx"


def backbone_session(backbone: nn.Module, path: Path, image_shape: tuple[int, ...]):
    """An ONNX Runtime session of `backbone` (normalised inputs (N, C, H, W) -> features (N, D)) from the graph at
    `path`, exported there first when absent (seconds; every split and later run reuses it)."""
    import onnxruntime

    with one_writer(path):
        if not path.exists():
            example = torch.zeros(2, *image_shape).contiguous(memory_format=torch.channels_last)
            staging = path.with_suffix(f".tmp-{os.getpid()}.onnx")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporter's deprecation chatter; errors still raise
                torch.onnx.export(backbone.eval(), (example,), str(staging), input_names=["inputs"],
                                  output_names=["features"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                  external_data=False, dynamo=True, verbose=False)
            staging.replace(path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def predict_onnx(session, images: np.ndarray, *, mean: list[float], std: list[float]) -> torch.Tensor:
    """Outputs (float32) of an ONNX Runtime `session` for uint8 images (N, C, H, W), normalised as `predict_logits`
    normalises them, in the device policy's CPU batches."""
    batch_size = inference_batch_size(torch.device("cpu"), tuple(images.shape))
    outputs = []
    for start in range(0, len(images), batch_size):
        inputs = normalise(images[start:start + batch_size], mean, std)
        outputs.append(torch.from_numpy(session.run(None, {"inputs": inputs.numpy()})[0]))
    return torch.cat(outputs) if outputs else torch.empty(0)
