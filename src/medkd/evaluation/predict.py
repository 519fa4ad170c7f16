"""Model outputs over uint8 image arrays, normalised as the model was trained."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import nn

from medkd.device import inference_batch_size
from medkd.evaluation.calibration import calibrated
from medkd.models import RunCard, WithFeatures, normalise


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray | torch.Tensor, *, mean: list[float], std: list[float],
                   batch_size: int | None = None, bf16: bool = False,
                   device: str | torch.device | None = None) -> torch.Tensor:
    """Outputs (float32, on the CPU) of `model` in eval mode for uint8 images (N, C, H, W), in batches (of
    `batch_size`, default the device policy's inference_batch_size), computed on `device` (default: where the
    model is); the model is back on its own device afterwards.

    Parameters
    ----------
    model : nn.Module
        Normalised float inputs (B, C, H, W), channels last, -> an output (B, ...) or a tuple of them; left in
        eval mode.
    images : np.ndarray or torch.Tensor of shape (N, C, H, W), uint8
    mean, std : list of float of length C
        The normalisation (see `normalise`).
    batch_size : int, optional
    bf16 : bool, default False
        Compute in bf16 autocast (the outputs are still float32).
    device : str or torch.device, optional

    Returns
    -------
    torch.Tensor of shape (N, ...), float32
        On the CPU, e.g. logits (N, classes) or features (N, D); a tuple of such tensors for a model with several
        outputs (WithFeatures); an empty tensor of shape (0,) for no images.
    """
    home = next(model.parameters(), torch.empty(0)).device
    device = torch.device(device) if device is not None else home
    batch_size = batch_size or inference_batch_size(device, tuple(images.shape))
    model.eval().to(device)
    outputs: list[Any] = []  # tensors, or tuples of them from a model with several outputs
    try:
        for start in range(0, len(images), batch_size):
            inputs = normalise(images[start:start + batch_size], mean, std).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                output = model(inputs.contiguous(memory_format=torch.channels_last))
            outputs.append(tuple(o.float().cpu() for o in output) if isinstance(output, tuple)
                           else output.float().cpu())
    finally:
        model.to(home)
    if not outputs:
        return torch.empty(0)
    if isinstance(outputs[0], tuple):  # a model with several outputs (e.g. logits and guard features): each whole
        # typed as the one output: the caller of a model with several knows it (predict_with_features unpacks them)
        return cast(torch.Tensor, tuple(torch.cat(parts) for parts in zip(*outputs)))
    return torch.cat(outputs)


def predict_with_features(model: nn.Module, images: np.ndarray | torch.Tensor, card: RunCard, kind: str,
                          device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, classes) and guard features (N, D) of `kind` (models.FEATURE_KINDS) of a run's model, one pass.

    Parameters
    ----------
    model, images, card
        As for `predict_run_logits`.
    kind : {"penultimate", "pooled", "blocks"}
        The guard's features (see `WithFeatures`).
    device : str or torch.device, optional
        Where it computes (default: where the model is).

    Returns
    -------
    logits : torch.Tensor of shape (N, classes), float32
        On the CPU.
    features : torch.Tensor of shape (N, D), float32
        On the CPU.

    Raises
    ------
    ModelError
        When the model cannot give features of `kind` (see `WithFeatures`).
    """
    example = torch.zeros(1, *images.shape[1:])
    logits, features = predict_run_logits(WithFeatures(model, kind, example), images, card, device=device)
    return logits, features


def predict_run_logits(model: nn.Module, images: np.ndarray | torch.Tensor, card: RunCard,
                       batch_size: int | None = None, device: str | torch.device | None = None,
                       bf16: bool = False) -> torch.Tensor:
    """Logits (N, classes) of a run folder's model for uint8 `images` (N, C, H, W), normalised as its card says.

    Parameters
    ----------
    model : nn.Module
        A run's model (`load_model`).
    images : np.ndarray or torch.Tensor of shape (N, C, H, W), uint8
    card : RunCard
        Its normalisation is applied.
    batch_size, device, bf16
        As for `predict_logits`.

    Returns
    -------
    torch.Tensor of shape (N, classes), float32
        On the CPU; uncalibrated.
    """
    norm = card.normalisation
    return predict_logits(model, images, mean=norm.mean, std=norm.std, batch_size=batch_size, device=device,
                          bf16=bf16)


def predict_probabilities(model: nn.Module, images: np.ndarray | torch.Tensor, card: RunCard,
                          batch_size: int | None = None, device: str | torch.device | None = None) -> np.ndarray:
    """Class probabilities (N, classes) of a run folder's model for uint8 `images` (N, C, H, W): its card's
    normalisation, and its calibration temperature (1 for runs from before medkd calibrated).

    Parameters
    ----------
    model, images, card
        As for `predict_run_logits`; the card's temperature is applied too.
    batch_size, device
        As for `predict_logits`.

    Returns
    -------
    np.ndarray of shape (N, classes), float32
        Rows sum to 1.
    """
    logits = predict_run_logits(model, images, card, batch_size=batch_size, device=device)
    return calibrated(logits, card.temperature)
