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
    softmax(logits / T) for `labels`; logits (N, classes). Optimised over log T with L-BFGS (convex in 1/T)."""
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
    """Class probabilities (N, classes) of logits divided by `temperature`."""
    return (logits.float() / temperature).softmax(dim=1).numpy()


def calibration_record(logits: torch.Tensor, labels: np.ndarray, temperature: float, settings: CalibrationConfig,
                       bins: int) -> dict:
    """For the run's card: the temperature and what it did on validation (ECE and NLL before and after)."""
    targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    record = {"method": settings.method, "temperature": temperature, "fitted_on": "val"}
    for name, t in (("before", 1.0), ("after", temperature)):
        record[f"val_ece_{name}"] = expected_calibration_error(labels, calibrated(logits, t), bins)
        record[f"val_nll_{name}"] = float(F.cross_entropy(logits.float() / t, targets))
    return record
