"""Percentile bootstrap confidence intervals of the scalar metrics, all from the same resamples."""

from __future__ import annotations

import numpy as np

from medkd.evaluation.metrics import SCALARS, classification_metrics


def bootstrap_intervals(labels: np.ndarray, probabilities: np.ndarray, threshold: float | None, *,
                        resamples: int, confidence: float, seed: int, calibration_bins: int = 15,
                        ) -> dict[str, tuple[float, float]]:
    """{metric: (low, high)} over `resamples` test sets drawn with replacement (cases resampled, model fixed)."""
    rng = np.random.default_rng(seed)
    draws = {name: [] for name in SCALARS}
    for _ in range(resamples):
        index = rng.integers(0, len(labels), len(labels))
        scores = classification_metrics(labels[index], probabilities[index], threshold,
                                        calibration_bins=calibration_bins, details=False)
        for name in SCALARS:
            draws[name].append(scores[name])
    tail = (1 - confidence) / 2 * 100
    return {name: tuple(float(q) for q in np.nanpercentile(values, [tail, 100 - tail]))
            for name, values in draws.items()}
