"""An out-of-distribution guard on a model's penultimate features: class-conditional Gaussians with one shared,
shrunk covariance (Lee et al., NeurIPS 2018, "A Simple Unified Framework for Detecting Out-of-Distribution
Samples"; the covariance is scikit-learn's Ledoit-Wolf estimate). The score of an image is its smallest squared
Mahalanobis distance to a class mean; the threshold lets a chosen share of validation images pass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.covariance import LedoitWolf
from torch import nn

from medkd.evaluation.config import GuardConfig
from medkd.files import OOD_GUARD, staged
from medkd.models import GuardRecord


class MahalanobisScore(nn.Module):
    """Pooled features (N, D) -> OOD scores (N,): min over classes of (f - mean_k)^T precision (f - mean_k).
    A module, so the same computation runs in PyTorch and inside the exported ONNX graph (Einsum, which the int8
    quantiser leaves in float).

    Parameters
    ----------
    means : torch.Tensor of shape (K, D)
        The K class means of the training features; kept in float32.
    precision : torch.Tensor of shape (D, D)
        The inverse of the shared covariance; kept in float32.
    """

    means: torch.Tensor  # buffers registered in __init__
    precision: torch.Tensor

    def __init__(self, means: torch.Tensor, precision: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("means", means.float())  # (K, D)
        self.register_buffer("precision", precision.float())  # (D, D)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance of each image's features to the nearest class mean.

        Parameters
        ----------
        features : torch.Tensor of shape (N, D)
            Computed in float32, on the buffers' device.

        Returns
        -------
        torch.Tensor of shape (N,), float32
            Higher: further from the training images.
        """
        centred = features.float()[:, None, :] - self.means[None]  # (N, K, D)
        distances = torch.einsum("nkd,de,nke->nk", centred, self.precision, centred)
        return distances.min(dim=1).values


@dataclass
class FeatureGuard:
    """A fitted guard: its score module and the threshold above which an image is out of distribution.

    Parameters
    ----------
    score : MahalanobisScore
        Features (N, D) -> scores (N,).
    threshold : float
        Scores above it are out of distribution.
    record : dict
        Its run card entry (GuardRecord's fields): method, features, threshold, pass rate, feature width,
        images fitted on.
    """

    score: MahalanobisScore
    threshold: float
    # for the run card (GuardRecord): method, features, threshold, pass rate, feature width, images fitted on
    record: dict

    @property
    def features(self) -> str:
        """What the guard reads (models.FEATURE_KINDS); guards from before the choice read the penultimate."""
        return self.record.get("features", "penultimate")

    def scores(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """The guard's score of each image, without gradients.

        Parameters
        ----------
        features : torch.Tensor or np.ndarray of shape (N, D)
            On the CPU; of the guard's kind (`features`).

        Returns
        -------
        np.ndarray of shape (N,), float32
        """
        with torch.no_grad():
            return self.score(torch.as_tensor(np.asarray(features))).numpy()

    def in_distribution(self, scores: np.ndarray) -> np.ndarray:
        """np.ndarray of shape (N,), bool: True where a score (N,) is at most the threshold."""
        return np.asarray(scores) <= self.threshold

    def save(self, folder: Path) -> dict:
        """Write the guard's tensors into run folder `folder`; returns its entry of the run card."""
        with staged(Path(folder) / OOD_GUARD) as staging:
            save_file({"means": self.score.means.contiguous(), "precision": self.score.precision.contiguous()},
                      staging)
        return self.record


def fit_guard(train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray,
              settings: GuardConfig) -> FeatureGuard:
    """Class means and one shared Ledoit-Wolf covariance of `train_features` (N, D) by class; the threshold is
    the `settings.val_pass_rate` quantile of the validation scores.

    Parameters
    ----------
    train_features : np.ndarray of shape (N, D), float
        Features of the training images (and of their augmented views); fitted in float64.
    train_labels : np.ndarray of shape (N,), int
        Their classes; one mean per class present (K of them).
    val_features : np.ndarray of shape (M, D), float
        Features of the validation images, which the threshold is chosen on.
    settings : GuardConfig
        method, features, train_views (recorded) and val_pass_rate.

    Returns
    -------
    FeatureGuard
        Means (K, D) and precision (D, D) in float32, and its card record.
    """
    train_features = np.asarray(train_features, dtype=np.float64)
    labels = np.asarray(train_labels)
    classes = np.unique(labels)
    means = np.stack([train_features[labels == k].mean(axis=0) for k in classes])
    centred = train_features - means[np.searchsorted(classes, labels)]
    estimate = LedoitWolf(assume_centered=True).fit(centred)
    score = MahalanobisScore(torch.from_numpy(means), torch.from_numpy(estimate.precision_))
    guard = FeatureGuard(score, 0.0, {})
    val_scores = guard.scores(np.asarray(val_features, dtype=np.float32))
    guard.threshold = float(np.quantile(val_scores, settings.val_pass_rate))
    guard.record = {"method": settings.method, "features": settings.features, "train_views": settings.train_views,
                    "file": OOD_GUARD, "threshold": guard.threshold,
                    "val_pass_rate": settings.val_pass_rate, "feature_dim": int(train_features.shape[1]),
                    "train_images": int(len(train_features)), "shrinkage": float(estimate.shrinkage_)}
    return guard


def load_guard(folder: Path, record: GuardRecord | None) -> FeatureGuard | None:
    """The guard a run folder holds (None when its card records none: trained without one, or before medkd
    had guards).

    Parameters
    ----------
    folder : Path
        The run folder.
    record : GuardRecord or None
        Its card's ood entry (card.ood).

    Returns
    -------
    FeatureGuard or None
    """
    if record is None or record.file is None or record.threshold is None:
        return None
    tensors = load_file(Path(folder) / record.file)
    return FeatureGuard(MahalanobisScore(tensors["means"], tensors["precision"]), record.threshold,
                        record.model_dump(exclude_none=True))
