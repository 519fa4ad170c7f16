"""Prior-shift correction without site labels (Saerens, Latinne & Decaestecker, Neural Computation 2002): a site's
class mix differs from training's (Kermany train: 74 % pneumonia, its test split: 62.5 %), so the model's
calibrated probabilities are off by the ratio of the priors. EM on the probabilities of the site's unlabelled
images re-estimates the site's prior; the probabilities re-weighted by site prior / training prior are the site's
posteriors, and the validation threshold applied to them keeps the meaning it had. It assumes the shift is in the
class mix alone (each class's images look as in training) and calibrated probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EM_TOLERANCE = 1e-6  # stop when no class's prior moves by more than this
EM_MAX_ITERATIONS = 1000


@dataclass(frozen=True)
class PriorEstimate:
    """The site's class prior estimated by EM, the training prior it started from, and how EM ended."""

    site_prior: np.ndarray  # (K,), sums to 1
    train_prior: np.ndarray  # (K,)
    iterations: int
    converged: bool


def training_prior(samples: pd.DataFrame, classes: int) -> np.ndarray:
    """(classes,) share of each class among the train split's samples (a PreparedData's sample table: its labels,
    no images)."""
    labels = samples.loc[samples["split"] == "train", "label"].to_numpy()
    return np.bincount(labels, minlength=classes) / len(labels)


def reweighted(probabilities: np.ndarray, train_prior: np.ndarray, site_prior: np.ndarray) -> np.ndarray:
    """Posteriors (N, K) under `site_prior` from posteriors under `train_prior`: p(c|x) * site(c) / train(c),
    renormalised per row (Saerens et al. 2002, eq. 2.4)."""
    weighted = probabilities * (np.asarray(site_prior) / np.asarray(train_prior))[None, :]
    return weighted / weighted.sum(axis=1, keepdims=True)


def estimate_site_prior(probabilities: np.ndarray, train_prior: np.ndarray) -> PriorEstimate:
    """EM for the class prior of the images behind `probabilities` (N, K), calibrated posteriors under
    `train_prior` (K,): E step, their posteriors under the current prior; M step, the prior is their mean.

    Raises
    ------
    ValueError
        For a training prior with a class of probability 0 (nothing to re-weight from) or no images.
    """
    train_prior = np.asarray(train_prior, dtype=np.float64)
    if len(probabilities) == 0:
        raise ValueError("no site images: the prior cannot be estimated")
    if (train_prior <= 0).any():
        raise ValueError(f"the training prior {train_prior.tolist()} has an empty class: nothing to re-weight from")
    prior, iterations, converged = train_prior.copy(), 0, False
    while iterations < EM_MAX_ITERATIONS and not converged:
        updated = reweighted(probabilities, train_prior, prior).mean(axis=0)
        converged = bool(np.abs(updated - prior).max() < EM_TOLERANCE)
        prior, iterations = updated, iterations + 1
    return PriorEstimate(prior, train_prior, iterations, converged)
