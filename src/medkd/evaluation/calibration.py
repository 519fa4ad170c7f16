"""Temperature scaling (Guo et al., ICML 2017, "On Calibration of Modern Neural Networks"): one scalar T > 0
divides the logits before the softmax, fitted by minimising the negative log-likelihood on the validation split.
It changes no ranking (AUC) and no argmax decision, only how far a probability can be trusted."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from medkd.evaluation.config import CalibrationConfig
from medkd.evaluation.metrics import expected_calibration_error


def fit_temperature(logits: torch.Tensor, labels: np.ndarray | torch.Tensor, settings: CalibrationConfig) -> float:
    """The temperature in [settings.min_temperature, settings.max_temperature] minimising the NLL of
    softmax(logits / T) for `labels`; logits (N, classes). Optimised over log T with L-BFGS (convex in 1/T).

    Parameters
    ----------
    logits : torch.Tensor of shape (N, classes)
        On the CPU (the validation split's); computed in float32.
    labels : np.ndarray or torch.Tensor of shape (N,), int
    settings : CalibrationConfig
        method none gives 1.0 without fitting.

    Returns
    -------
    float
        T > 0, clipped to the settings' range.
    """
    if settings.method == "none":
        return 1.0
    logits = logits.detach().float()
    targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    log_t = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=settings.max_iterations, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.detach().exp().clamp(settings.min_temperature, settings.max_temperature))


def calibrated(logits: torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities (N, classes) of logits divided by `temperature`.

    Parameters
    ----------
    logits : torch.Tensor of shape (N, classes)
        On the CPU.
    temperature : float, default 1.0
        1: the raw softmax.

    Returns
    -------
    np.ndarray of shape (N, classes), float32
        Rows sum to 1.
    """
    return (logits.float() / temperature).softmax(dim=1).numpy()


def calibration_record(logits: torch.Tensor, labels: np.ndarray, temperature: float, settings: CalibrationConfig,
                       bins: int) -> dict:
    """For the run's card: the temperature and what it did on validation (ECE and NLL before and after).

    Parameters
    ----------
    logits : torch.Tensor of shape (N, classes)
        The validation split's, on the CPU.
    labels : np.ndarray of shape (N,), int
    temperature : float
        The fitted temperature (`fit_temperature`).
    settings : CalibrationConfig
        Its method is recorded.
    bins : int
        Bins of the top-label ECE.

    Returns
    -------
    dict
        method, temperature, fitted_on ("val"), val_ece_before, val_ece_after, val_nll_before, val_nll_after.
    """
    targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    record = {"method": settings.method, "temperature": temperature, "fitted_on": "val"}
    for name, t in (("before", 1.0), ("after", temperature)):
        record[f"val_ece_{name}"] = expected_calibration_error(labels, calibrated(logits, t), bins)
        record[f"val_nll_{name}"] = float(F.cross_entropy(logits.float() / t, targets))
    return record
