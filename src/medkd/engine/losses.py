"""Classification losses on labels: cross-entropy or focal, with optional class weights for imbalance."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medkd.engine.config import LossConfig


def class_weights(counts: np.ndarray, mode: str) -> torch.Tensor | None:
    """'balanced': n / (k * count_c), so every class carries the same total weight; 'none': None."""
    if mode == "none":
        return None
    counts = np.maximum(counts, 1)
    return torch.as_tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)


def class_weighted_mean(losses: torch.Tensor, labels: torch.Tensor | None, weight: torch.Tensor | None
                        ) -> torch.Tensor:
    """Mean of per-sample `losses` (N,); with class weights `weight` (C,), sum(w_y * loss) / sum(w_y), the mean a
    weighted cross-entropy takes.

    Parameters
    ----------
    losses : torch.Tensor of shape (N,), float
        The loss of each sample.
    labels : torch.Tensor of shape (N,), int64, or None
        Each sample's class; needed only with `weight`.
    weight : torch.Tensor of shape (C,), float, or None
        One weight per class; None: the plain mean.

    Returns
    -------
    torch.Tensor of shape (), float
    """
    if weight is None:
        return losses.mean()
    assert labels is not None  # class weights weigh each sample by its label's weight
    weights = weight[labels]
    return (losses * weights).sum() / weights.sum()


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, settings: LossConfig,
                        weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean loss of a batch; focal loss down-weights examples the model already gets right by (1 - p_true)^gamma.

    Parameters
    ----------
    logits : torch.Tensor of shape (N, C)
        Computed in float32 whatever their dtype.
    labels : torch.Tensor of shape (N,), int64
    settings : LossConfig
        cross-entropy or focal, label smoothing, focal gamma.
    weight : torch.Tensor of shape (C,), float32, optional
        Class weights (see `class_weighted_mean`).

    Returns
    -------
    torch.Tensor of shape (), float32
    """
    logits = logits.float()
    if settings.name == "cross_entropy":
        return F.cross_entropy(logits, labels, weight=weight, label_smoothing=settings.label_smoothing)
    return class_weighted_mean(per_example_loss(logits, labels, settings), labels, weight)


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor, settings: LossConfig) -> torch.Tensor:
    """Each sample's unweighted loss (N,) in float32: cross-entropy with label smoothing, focal's factor too."""
    logits = logits.float()
    per_example = F.cross_entropy(logits, labels, reduction="none", label_smoothing=settings.label_smoothing)
    if settings.name == "cross_entropy":
        return per_example
    p_true = logits.softmax(dim=1).gather(1, labels[:, None])[:, 0]
    return (1 - p_true) ** settings.focal_gamma * per_example


def mixed_classification_loss(logits: torch.Tensor, labels: torch.Tensor, partner_labels: torch.Tensor,
                              own_weight: torch.Tensor, settings: LossConfig,
                              weight: torch.Tensor | None = None) -> torch.Tensor:
    """The hard-label loss of mixed images (mixup): each sample's loss on its own label weighted as its own image,
    plus on its partner's label weighted as the partner's pixels; each term's mean class-weighted by its labels.

    Parameters
    ----------
    logits : torch.Tensor of shape (N, C)
    labels, partner_labels : torch.Tensor of shape (N,), int64
    own_weight : torch.Tensor of shape (N,) or (), float
        The share of each mixed image that is its own image, in [0, 1].
    settings : LossConfig
    weight : torch.Tensor of shape (C,), float32, optional
        Class weights (see `class_weighted_mean`).

    Returns
    -------
    torch.Tensor of shape (), float32
    """
    own = own_weight.float().expand(len(labels))
    return (class_weighted_mean(own * per_example_loss(logits, labels, settings), labels, weight)
            + class_weighted_mean((1 - own) * per_example_loss(logits, partner_labels, settings), partner_labels,
                                  weight))
