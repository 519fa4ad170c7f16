"""Model inputs: uint8 images to the float tensors a model was trained on. One definition for training,
evaluation, distillation, export and Grad-CAM, so every stage sees what training saw."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

PIXEL_SCALE = 255.0  # uint8 pixels -> [0, 1] before the per-channel standardisation


def channel_statistics(values: Sequence[float], device: torch.device | str | None = None) -> torch.Tensor:
    """Per-channel (C,) statistics as a (1, C, 1, 1) float tensor that broadcasts over a batch.

    Parameters
    ----------
    values : sequence of float of length C
        One value per channel, e.g. a normalisation's mean or std.
    device : torch.device or str, optional
        Where the tensor is made (default: torch's default device).

    Returns
    -------
    torch.Tensor of shape (1, C, 1, 1), float32
    """
    return torch.as_tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)


def normalise(images: np.ndarray | torch.Tensor, mean: Sequence[float] | torch.Tensor,
              std: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float (N, C, H, W): scaled to [0, 1], then (x - mean) / std per channel.

    Parameters
    ----------
    images : np.ndarray or torch.Tensor of shape (N, C, H, W), uint8
        Pixels in 0..255; a NumPy array becomes a CPU tensor.
    mean, std : sequence of float of length C, or torch.Tensor of shape (1, C, 1, 1)
        Per-channel statistics of inputs scaled to [0, 1]; a tensor (see `channel_statistics`) is used as it is
        and must be on the images' device.

    Returns
    -------
    torch.Tensor of shape (N, C, H, W), float32
        On the images' device.
    """
    batch = images if torch.is_tensor(images) else torch.as_tensor(np.asarray(images))
    mean = mean if torch.is_tensor(mean) else channel_statistics(mean, batch.device)
    std = std if torch.is_tensor(std) else channel_statistics(std, batch.device)
    return (batch.float() / PIXEL_SCALE - mean) / std
