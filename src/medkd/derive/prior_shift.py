"""Prior shift without site labels (Saerens, Latinne & Decaestecker, Neural Computation 2002): a site's class mix
differs from training's (Kermany train: 74 % pneumonia, its test split: 62.5 %), so the model's calibrated
probabilities are off by the ratio of the priors. EM on the probabilities of the site's unlabelled images
re-estimates the site's prior; it is folded into the classifier's bias, so that every consumer of the model
(evaluate, predict, serve, the exported graph) gives the site's posteriors. The validation threshold is kept: on the
re-weighted probabilities it means what it meant in validation, if the shift is in the class mix alone (each class's
images look as in training) and the probabilities are calibrated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from medkd.derive.base import DerivedRunMethod, DeriveSettings, register_derived_run

if TYPE_CHECKING:
    import pandas as pd
    import torch

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


class PriorShiftSettings(DeriveSettings):
    name: Literal["prior-shift"] = "prior-shift"


def fold_prior_shift(model: torch.nn.Module, card, train_prior: np.ndarray, site_prior: np.ndarray) -> None:
    """Put the re-weighting by site prior / training prior into the classifier's bias: with logits z and
    calibration temperature T, softmax((z + T log(site / train)) / T) is softmax(z / T) re-weighted by the ratio
    and renormalised (`reweighted`)."""
    import torch

    from medkd.models import ModelError, classifier_name

    head = model.get_submodule(classifier_name(model))
    bias = getattr(head, "bias", None)
    if not isinstance(bias, torch.Tensor) or bias.shape != (len(card.classes),):
        raise ModelError(f"{card.architecture}'s classifier ({classifier_name(model)}) has no bias of one value per "
                         "class to carry the prior shift")
    with torch.no_grad():
        bias += card.temperature * torch.as_tensor(np.log(site_prior / train_prior), dtype=bias.dtype)


@register_derived_run("prior-shift")
class PriorShift(DerivedRunMethod):
    Settings = PriorShiftSettings
    needs_site_images = True

    def derive(self, source, inputs, out):
        from medkd.evaluation import calibrated, predict_run_logits
        from medkd.models import load_model

        model, card = load_model(source)
        assert inputs.site_images is not None  # derive_run checks needs_site_images
        train_prior = training_prior(inputs.source_data().samples, len(card.classes))
        probabilities = calibrated(predict_run_logits(model, inputs.site_images, card), card.temperature)
        estimate = estimate_site_prior(probabilities, train_prior)
        fold_prior_shift(model, card, estimate.train_prior, estimate.site_prior)
        return model, card, {"classes": card.classes, "train_prior": estimate.train_prior.round(6).tolist(),
                             "site_prior": estimate.site_prior.round(6).tolist(),
                             "em_iterations": estimate.iterations, "em_converged": estimate.converged}
