"""Classification metrics from predicted probabilities (scikit-learn and torchmetrics do the scoring).

Binary tasks: the positive class is index 1; precision, recall (sensitivity), specificity and F1 are of
that class, and a decision threshold on P(positive) may replace argmax. Multi-class tasks: argmax
decisions, macro averages, one-vs-rest macro AUC.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)
from torchmetrics.functional.classification import multiclass_calibration_error

# The scalar metrics, in the order tables show them. log_loss and brier are proper scoring rules of the
# probabilities (lower is better): they still separate models whose AUC has saturated.
SCALARS = ("accuracy", "balanced_accuracy", "precision", "recall", "specificity", "f1", "auc",
           "average_precision", "ece", "log_loss", "brier")
LOWER_IS_BETTER = ("ece", "log_loss", "brier")


def decisions(probabilities: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Predicted class per row: P(positive) >= threshold for binary tasks given one, else argmax.

    Parameters
    ----------
    probabilities : np.ndarray of shape (N, classes), float
    threshold : float, optional
        On P(positive), column 1; binary tasks only.

    Returns
    -------
    np.ndarray of shape (N,), int64
        Class indices.

    Raises
    ------
    ValueError
        For a threshold with other than two classes.
    """
    if threshold is None:
        return probabilities.argmax(axis=1)
    if probabilities.shape[1] != 2:
        raise ValueError("a decision threshold applies to binary tasks only; multi-class decisions use argmax")
    return (probabilities[:, 1] >= threshold).astype(np.int64)


def specificities(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class specificity TN / (TN + FP), one-vs-rest."""
    per_class = multilabel_confusion_matrix(labels, predicted, labels=list(range(num_classes)))
    tn, fp = per_class[:, 0, 0], per_class[:, 0, 1]
    return np.divide(tn, tn + fp, out=np.zeros(num_classes), where=(tn + fp) > 0)


def ranking_scores(labels: np.ndarray, probabilities: np.ndarray) -> tuple[float, float]:
    """(AUC-ROC, average precision); NaN when the labels hold one class only.

    Binary tasks: of P(positive), column 1. Multi-class: one-vs-rest macro averages, NaN as well when a class is
    absent from the labels.

    Parameters
    ----------
    labels : np.ndarray of shape (N,), int
    probabilities : np.ndarray of shape (N, classes), float

    Returns
    -------
    auc : float
    average_precision : float
    """
    num_classes = probabilities.shape[1]
    if len(np.unique(labels)) < 2:
        return float("nan"), float("nan")
    if num_classes == 2:
        return (float(roc_auc_score(labels, probabilities[:, 1])),
                float(average_precision_score(labels, probabilities[:, 1])))
    present = np.unique(labels)
    if len(present) < num_classes:  # one-vs-rest AUC needs every class present
        return float("nan"), float("nan")
    onehot = np.eye(num_classes)[labels]
    return (float(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")),
            float(average_precision_score(onehot, probabilities, average="macro")))


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: |confidence - accuracy| averaged over `bins` equal-width confidence bins, weighted by count.

    Parameters
    ----------
    labels : np.ndarray of shape (N,), int
    probabilities : np.ndarray of shape (N, classes), float
    bins : int, default 15

    Returns
    -------
    float
        In [0, 1]; 0 is perfectly calibrated.
    """
    return float(multiclass_calibration_error(torch.from_numpy(np.asarray(probabilities)).float(),
                                              torch.from_numpy(np.asarray(labels, dtype=np.int64)),
                                              num_classes=probabilities.shape[1], n_bins=bins, norm="l1"))


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean negative log-probability (N, C) of each image's true class (N,), probabilities clipped at 1e-12.
    scikit-learn's log_loss in a line: its input checks cost more than the bootstrap's thousand draws can afford."""
    return float(np.mean(case_log_losses(labels, probabilities)))


def case_log_losses(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Each image's negative log-probability (N,) of its true class, clipped at 1e-12 (log_loss is their mean)."""
    picked = probabilities[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]
    return -np.log(np.clip(picked, 1e-12, 1.0))


def brier_score(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean over images of the squared distance between the class probabilities (N, C) and the one-hot label
    (N,): 0 is perfect (the multi-class Brier score; for two classes it is twice the binary one).

    Parameters
    ----------
    labels : np.ndarray of shape (N,), int
    probabilities : np.ndarray of shape (N, C), float

    Returns
    -------
    float
        In [0, 2].
    """
    return float(np.mean(case_brier_scores(labels, probabilities)))


def case_brier_scores(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Each image's squared distance (N,) between its class probabilities and its one-hot label (brier_score is
    their mean)."""
    onehot = np.eye(probabilities.shape[1])[np.asarray(labels, dtype=np.int64)]
    return np.sum((probabilities - onehot) ** 2, axis=1)


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float | None = None, *,
                           calibration_bins: int = 15, details: bool = True,
                           predicted: np.ndarray | None = None) -> dict:
    """Scalar metrics (see SCALARS), plus per-class scores and the confusion matrix when `details`.

    Binary tasks: precision, recall, specificity and F1 of the positive class (index 1); multi-class: their macro
    averages. AUC and average precision are NaN where undefined (see `ranking_scores`).

    Parameters
    ----------
    labels : np.ndarray of shape (N,), int
    probabilities : np.ndarray of shape (N, classes), float
    threshold : float, optional
        Decision threshold on P(positive) (binary tasks); None: argmax (see `decisions`).
    calibration_bins : int, default 15
        Bins of the ECE.
    details : bool, default True
        Add "per_class" (precision, recall, specificity, f1, support: lists of length classes) and
        "confusion_matrix" (classes x classes nested lists, rows true, columns predicted).
    predicted : np.ndarray of shape (N,), int, optional
        Decisions made elsewhere (pooled folds, each decided at its own threshold) instead of `threshold`'s.

    Returns
    -------
    dict
        Each name of SCALARS to a float, and the details.

    Raises
    ------
    ValueError
        For a threshold with other than two classes.
    """
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = probabilities.shape[1]
    predicted = decisions(probabilities, threshold) if predicted is None else np.asarray(predicted, dtype=np.int64)
    classes = list(range(num_classes))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=classes,
                                                                     zero_division=0)
    specificity = specificities(labels, predicted, num_classes)
    binary = num_classes == 2
    pick = (lambda values: float(values[1])) if binary else (lambda values: float(np.mean(values)))
    auc, average_precision = ranking_scores(labels, probabilities)
    result: dict[str, Any] = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "precision": pick(precision), "recall": pick(recall), "specificity": pick(specificity), "f1": pick(f1),
        "auc": auc, "average_precision": average_precision,
        "ece": expected_calibration_error(labels, probabilities, calibration_bins),
        "log_loss": log_loss(labels, probabilities),
        "brier": brier_score(labels, probabilities),
    }
    if details:
        result["per_class"] = {"precision": precision.tolist(), "recall": recall.tolist(),
                               "specificity": specificity.tolist(), "f1": f1.tolist(), "support": support.tolist()}
        result["confusion_matrix"] = confusion_matrix(labels, predicted, labels=classes).tolist()
    return result
