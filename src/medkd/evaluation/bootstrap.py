"""Percentile bootstrap confidence intervals of the scalar metrics, all from the same resamples."""

from __future__ import annotations

import numpy as np

from medkd.evaluation.metrics import SCALARS, classification_metrics


def bootstrap_intervals(labels: np.ndarray, probabilities: np.ndarray, threshold: float | None, *,
                        resamples: int, confidence: float, seed: int, calibration_bins: int = 15,
                        ) -> dict[str, tuple[float, float]]:
    """{metric: (low, high)} over `resamples` test sets drawn with replacement (cases resampled, model fixed).

    Parameters
    ----------
    labels : np.ndarray of shape (N,), int
        True classes.
    probabilities : np.ndarray of shape (N, classes), float
        Predicted class probabilities.
    threshold : float or None
        Decision threshold on P(positive) (binary tasks); None: argmax.
    resamples : int
        Bootstrap draws of N cases each.
    confidence : float
        In (0, 1), e.g. 0.95 for the 2.5th and 97.5th percentiles.
    seed : int
        Seed of the draws.
    calibration_bins : int, default 15
        Bins of the ECE.

    Returns
    -------
    dict of str to (float, float)
        For each metric of SCALARS, its percentile interval; draws where a metric is undefined (NaN, e.g. AUC of
        a draw with one class) are left out.
    """
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in SCALARS}
    for _ in range(resamples):
        index = rng.integers(0, len(labels), len(labels))
        scores = classification_metrics(labels[index], probabilities[index], threshold,
                                        calibration_bins=calibration_bins, details=False)
        for name in SCALARS:
            draws[name].append(scores[name])
    tail = (1 - confidence) / 2 * 100
    intervals: dict[str, tuple[float, float]] = {}
    for name, values in draws.items():
        low, high = np.nanpercentile(values, [tail, 100 - tail])
        intervals[name] = (float(low), float(high))
    return intervals
