"""Paired tests of two models on the same test cases: DeLong for AUC, exact McNemar for accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, norm, rankdata


@dataclass(frozen=True)
class PairedTest:
    """A paired test's result: each model's statistic on the same cases, and the two-sided p-value.

    Attributes
    ----------
    statistic_a, statistic_b : float
        Model a's and model b's statistic: AUC (DeLong) or accuracy (McNemar).
    p_value : float
        Of the hypothesis that the two are equal.
    """

    statistic_a: float
    statistic_b: float
    p_value: float


def _placements(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: per positive, the share of negatives ranked below it (ties count half),
    and per negative, the share of positives ranked above it."""
    m, n = len(positives), len(negatives)
    joint = rankdata(np.concatenate([positives, negatives]))  # mid-ranks: ties count half
    v10 = (joint[:m] - rankdata(positives)) / n
    v01 = 1 - (joint[m:] - rankdata(negatives)) / m
    return v10, v01


def delong_test(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> PairedTest:
    """Two-sided DeLong test (DeLong et al., 1988) that two correlated binary AUCs are equal.

    Parameters
    ----------
    labels : np.ndarray of shape (N,)
        True classes, 1 (or True) for positive.
    scores_a, scores_b : np.ndarray of shape (N,), float
        Each model's score of the same cases, e.g. P(positive).

    Returns
    -------
    PairedTest
        The two AUCs and the p-value (1.0 when the difference has no variance).

    Raises
    ------
    ValueError
        When the labels hold one class only.
    """
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("the DeLong test needs positive and negative cases")
    parts = [_placements(np.asarray(s)[labels], np.asarray(s)[~labels]) for s in (scores_a, scores_b)]
    aucs = np.array([v10.mean() for v10, _ in parts])
    s10 = np.cov(np.stack([v10 for v10, _ in parts]))
    s01 = np.cov(np.stack([v01 for _, v01 in parts]))
    covariance = s10 / labels.sum() + s01 / (~labels).sum()
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    if variance <= 1e-15:
        return PairedTest(float(aucs[0]), float(aucs[1]), 1.0)
    z = (aucs[0] - aucs[1]) / np.sqrt(variance)
    return PairedTest(float(aucs[0]), float(aucs[1]), float(2 * norm.sf(abs(z))))


def mcnemar_test(labels: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray) -> PairedTest:
    """Exact two-sided McNemar test that two classifiers have the same accuracy on the same cases: a binomial
    test on the cases exactly one of them gets right.

    Parameters
    ----------
    labels : np.ndarray of shape (N,), int
        True classes.
    predicted_a, predicted_b : np.ndarray of shape (N,), int
        Each classifier's decided class of the same cases.

    Returns
    -------
    PairedTest
        The two accuracies and the p-value (1.0 when no case is right for one only).
    """
    right_a, right_b = predicted_a == labels, predicted_b == labels
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    p_value = 1.0 if only_a + only_b == 0 else binomtest(only_a, only_a + only_b, 0.5).pvalue
    return PairedTest(float(right_a.mean()), float(right_b.mean()), float(p_value))
