"""Batch-norm statistics measured again on a set of images: AdaBN at a new site (Li et al., 2016), and after
weights are interpolated (WiSE-FT), where averaged statistics no longer match the averaged weights."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from medkd.models.card import Normalisation
from medkd.models.inputs import channel_statistics, normalise


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """Every batch-norm layer of `model` (timm's BatchNormAct2d too)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def reestimate_batchnorm(model: nn.Module, images: np.ndarray | torch.Tensor, normalisation: Normalisation, *,
                         batch_size: int = 64, device: torch.device | str = "cpu") -> int:
    """Reset every batch-norm layer's running mean and variance and measure them on uint8 `images` (N, C, H, W),
    normalised as the model's card says, in batches of `batch_size` (the layers see batch statistics, as in
    training), as a plain average over the batches (torch.optim.swa_utils.update_bn); the model is left on
    `device` in eval mode. Returns how many layers were re-estimated (0: none to re-estimate; the model is
    unchanged)."""
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    images, device = torch.as_tensor(images), torch.device(device)
    mean = channel_statistics(normalisation.mean, device)
    std = channel_statistics(normalisation.std, device)
    model.to(device)
    with torch.no_grad():
        batches = (normalise(images[i:i + batch_size].to(device), mean, std)
                   for i in range(0, len(images), batch_size))
        update_bn(batches, model, device=device)
    model.eval()
    return len(layers)
