"""Percentile bootstrap confidence intervals of the scalar metrics, all from the same resamples; by patient where
patients are known (a patient's images are not independent cases: the Kermany test split's 624 images come from
427 patients), else by image.

A resample of N cases drawn with replacement is the test set with case i counted w_i times (w sums to N), so every
metric of a resample is a weighted sum over the N cases: the draws are scored together as a (resamples, N) matrix of
counts instead of one call of `classification_metrics` per draw (a thousand calls took about a minute per split on a
CPU). `resampled_scalars` equals `classification_metrics` on each draw (tests/test_evaluation.py).
"""

from __future__ import annotations

import numpy as np
import torch

from medkd.evaluation.metrics import SCALARS, case_brier_scores, case_log_losses, decisions

CELLS_PER_CHUNK = 4_000_000  # resamples x cases scored at once: bounds the count matrices' memory (~32 MB each)


def bootstrap_intervals(labels: np.ndarray, probabilities: np.ndarray, threshold: float | None, *,
                        resamples: int, confidence: float, seed: int, calibration_bins: int = 15,
                        groups: np.ndarray | None = None) -> dict[str, tuple[float, float]]:
    """{metric: (low, high)} over `resamples` test sets drawn with replacement (cases, or whole groups of cases,
    resampled; model fixed).

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
    groups : np.ndarray of shape (N,), optional
        Each case's group (its patient): a resample draws as many groups as there are, with replacement, and takes
        every case of each group drawn (the cluster bootstrap). None: cases are drawn one by one.

    Returns
    -------
    dict of str to (float, float)
        For each metric of SCALARS, its percentile interval; draws where a metric is undefined (NaN, e.g. AUC of
        a draw with one class) are left out.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    n = len(labels)
    chunk = max(1, CELLS_PER_CHUNK // max(n, 1))
    parts: list[dict[str, np.ndarray]] = []
    codes = None if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    for start in range(0, resamples, chunk):
        if codes is None:
            counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n)  # draw by draw: the same draws as ever
                               for _ in range(min(chunk, resamples - start))])
        else:  # a group's cases count as often as the group was drawn
            k = int(codes.max()) + 1
            counts = np.stack([np.bincount(rng.integers(0, k, k), minlength=k)[codes]
                               for _ in range(min(chunk, resamples - start))])
        parts.append(resampled_scalars(labels, probabilities, threshold, counts, calibration_bins=calibration_bins))
    tail = (1 - confidence) / 2 * 100
    intervals: dict[str, tuple[float, float]] = {}
    for name in SCALARS:
        values = np.concatenate([part[name] for part in parts])
        low, high = np.nanpercentile(values, [tail, 100 - tail]) if not np.isnan(values).all() else (np.nan, np.nan)
        intervals[name] = (float(low), float(high))
    return intervals


def resampled_scalars(labels: np.ndarray, probabilities: np.ndarray, threshold: float | None, counts: np.ndarray, *,
                      calibration_bins: int = 15) -> dict[str, np.ndarray]:
    """Each metric of SCALARS on each resample, as `classification_metrics` scores it.

    Parameters
    ----------
    labels : np.ndarray of shape (N,), int
    probabilities : np.ndarray of shape (N, classes), float
    threshold : float or None
        As in `classification_metrics`.
    counts : np.ndarray of shape (R, N), int
        How many times each case is in each of R resamples (a row sums to N when cases are drawn one by one).
    calibration_bins : int, default 15

    Returns
    -------
    dict of str to np.ndarray of shape (R,)
        NaN where a metric is undefined on a resample (AUC and average precision without every class).
    """
    weights = counts.astype(np.float64)
    total = weights.sum(axis=1)
    num_classes = probabilities.shape[1]
    predicted = decisions(probabilities, threshold)
    cells = np.zeros((len(labels), num_classes * num_classes))
    cells[np.arange(len(labels)), labels * num_classes + predicted] = 1
    confusion = (weights @ cells).reshape(-1, num_classes, num_classes)  # (R, true, predicted)
    tp = np.diagonal(confusion, axis1=1, axis2=2)
    support, called = confusion.sum(axis=2), confusion.sum(axis=1)
    fp, fn = called - tp, support - tp
    tn = total[:, None] - tp - fp - fn
    precision, recall = ratio(tp, called), ratio(tp, support)
    f1, specificity = ratio(2 * tp, 2 * tp + fp + fn), ratio(tn, tn + fp)
    present = support > 0
    pick = (lambda values: values[:, 1]) if num_classes == 2 else (lambda values: values.mean(axis=1))
    auc, average_precision = resampled_ranking(labels, probabilities, weights)
    return {
        "accuracy": tp.sum(axis=1) / total,
        "balanced_accuracy": np.where(present, recall, 0).sum(axis=1) / present.sum(axis=1),
        "precision": pick(precision), "recall": pick(recall), "specificity": pick(specificity), "f1": pick(f1),
        "auc": auc, "average_precision": average_precision,
        "ece": resampled_ece(labels, probabilities, weights, calibration_bins),
        "log_loss": weights @ case_log_losses(labels, probabilities) / total,
        "brier": weights @ case_brier_scores(labels, probabilities) / total,
    }


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64), where=denominator > 0)


def resampled_ranking(labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(AUC, average precision) of each resample (R,), as `ranking_scores`: of P(positive) for two classes,
    one-vs-rest macro averages otherwise; NaN on a resample without every class."""
    num_classes = probabilities.shape[1]
    columns = [1] if num_classes == 2 else range(num_classes)
    scores = [weighted_ranking(labels == c, probabilities[:, c], weights) for c in columns]
    auc = np.mean([s[0] for s in scores], axis=0)
    average_precision = np.mean([s[1] for s in scores], axis=0)
    complete = np.stack([weights[:, labels == c].sum(axis=1) > 0 for c in range(num_classes)]).all(axis=0)
    return np.where(complete, auc, np.nan), np.where(complete, average_precision, np.nan)


def weighted_ranking(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUC, average precision) of `score` (N,) for the cases `positive` (N,) bool, weighted by each row of
    `weights` (R, N): the Mann-Whitney statistic with ties counted half, and average precision summed over the
    distinct scores from the highest down (scikit-learn's step-wise definition)."""
    order = np.argsort(-score, kind="stable")
    ranked = score[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # one group per distinct score, highest first
    pos = np.add.reduceat(weights[:, order] * positive[order], starts, axis=1)  # (R, groups)
    neg = np.add.reduceat(weights[:, order] * ~positive[order], starts, axis=1)
    pos_total, neg_total = pos.sum(axis=1), neg.sum(axis=1)
    neg_below = neg_total[:, None] - np.cumsum(neg, axis=1)  # negatives scored lower than each group
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (pos_total * neg_total)
        tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
        average_precision = (pos * ratio(tp, tp + fp)).sum(axis=1) / pos_total
    return auc, average_precision


def resampled_ece(labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray, bins: int) -> np.ndarray:
    """Top-label ECE of each resample (R,), as `expected_calibration_error`: torchmetrics' bins (its float32 top
    probabilities bucketed on its float32 edges, right-closed, a top probability of exactly 1 in a bin of its own)."""
    confidence = torch.from_numpy(np.asarray(probabilities.max(axis=1), dtype=np.float32))
    index = (torch.bucketize(confidence, torch.linspace(0, 1, bins + 1), right=True) - 1).numpy()
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    members = np.zeros((len(labels), bins + 1))
    members[np.arange(len(labels)), index] = 1
    gap = weights @ (members * (correct - confidence.double().numpy())[:, None])  # (R, bins + 1): accuracy - confidence
    return np.abs(gap).sum(axis=1) / weights.sum(axis=1)
