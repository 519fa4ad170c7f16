"""Choosing a binary decision threshold on validation predictions."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from medkd.evaluation.config import ThresholdConfig


def choose_threshold(labels: np.ndarray, positive_probability: np.ndarray, settings: ThresholdConfig) -> float:
    """The threshold on P(positive) that `settings.rule` picks on these (validation) predictions.

    Parameters
    ----------
    labels : np.ndarray of shape (N,), int
        True classes, 1 for positive.
    positive_probability : np.ndarray of shape (N,), float
        P(positive) of each case (calibrated).
    settings : ThresholdConfig
        youden, sensitivity (with target_sensitivity), accuracy, or fixed (value).

    Returns
    -------
    float
        In [0, 1]; a case is positive when P(positive) >= it.

    Raises
    ------
    ValueError
        When the labels hold one class only (any rule but fixed).
    """
    if settings.rule == "fixed":
        return settings.value
    if len(np.unique(labels)) < 2:
        raise ValueError("choosing a threshold needs both classes among the validation labels")
    fpr, tpr, thresholds = roc_curve(labels, positive_probability)
    thresholds = np.minimum(thresholds, 1.0)  # roc_curve's first threshold is +inf: "predict nothing positive"
    if settings.rule == "youden":
        best = int(np.argmax(tpr - fpr))
    elif settings.rule == "accuracy":  # correct decisions: true positives + true negatives
        positives = int(np.sum(labels == 1))
        best = int(np.argmax(tpr * positives + (1 - fpr) * (len(labels) - positives)))
    else:  # the first (highest) threshold whose sensitivity reaches the target
        best = int(np.argmax(tpr >= settings.target_sensitivity))
    return float(thresholds[best])
