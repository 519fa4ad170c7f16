"""WiSE-FT (Wortsman et al., CVPR 2022): a network's weights interpolated between where fine-tuning started and
where it ended, theta(alpha) = (1 - alpha) * theta_start + alpha * theta_fine-tuned.

Here the start is an lp-ft run's probe-initialised model (the pretrained backbone with the probe's trained head:
its own model, in the run's probe folder), the end the same run's fine-tuned model. Batch-norm networks fall off
the path when their running statistics are averaged with the weights (issue 31: Lite0 at alpha 0.5 and 0.75 lost
validation AUC), so by default the statistics are measured again on the training images after mixing
(models.reestimate_batchnorm, torch's update_bn).
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from medkd.data import PreparedData
from medkd.engine.config import BatchnormMode
from medkd.engine.module import auroc
from medkd.errors import MedkdError
from medkd.evaluation import predict_run_logits
from medkd.files import BEST, PROBE
from medkd.models import RunCard, load_model, reestimate_batchnorm

BATCHNORM_MODES = get_args(BatchnormMode)  # the settings' choices, in the curve's order


class WiseFTError(MedkdError):
    """A WiSE-FT run whose endpoints cannot be found or do not match; the message says what to do."""


def endpoints(weights: str | Path) -> tuple[Path, Path]:
    """(start, fine-tuned) run folders of the lp-ft run whose model file `weights` is (a study's weights_from
    gives it): its probe folder and the run folder itself."""
    fine_tuned = Path(weights).parent if Path(weights).suffix else Path(weights)
    if not (fine_tuned / BEST).exists():
        raise WiseFTError(f"wise-ft starts from a finished lp-ft run's model: {fine_tuned / BEST} is missing "
                          "(set train.weights to that file, or weights_from: STAGE in a recipe)")
    card = RunCard.read(fine_tuned)
    if card.transfer != "lp-ft" or not (fine_tuned / PROBE / BEST).exists():
        raise WiseFTError(f"{fine_tuned} is a {card.transfer} run: wise-ft interpolates between an lp-ft run's "
                          "probe-initialised model (its probe folder) and its fine-tuned one; train the stage it "
                          "starts from with transfer: lp-ft")
    return fine_tuned / PROBE, fine_tuned


def interpolated_state(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor],
                       alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) * start + alpha * end for every floating-point tensor (batch-norm running statistics too);
    integer buffers (batch-norm's step counts) are the end's."""
    if start.keys() != end.keys():
        raise WiseFTError(f"the two models hold other tensors ({sorted(set(start) ^ set(end))[:3]}): WiSE-FT needs "
                          "one architecture at both ends")
    return {name: torch.lerp(start[name].float(), end[name].float(), alpha).to(end[name].dtype)
            if end[name].is_floating_point() else end[name].clone() for name in end}


class Endpoints:
    """The two ends of a WiSE-FT path, loaded once; `at(alpha, batchnorm)` gives the model between them."""

    def __init__(self, weights: str | Path) -> None:
        start_folder, end_folder = endpoints(weights)
        start, start_card = load_model(start_folder)
        self.model, self.card = load_model(end_folder)
        if start_card.architecture != self.card.architecture or start_card.preprocessing != self.card.preprocessing:
            raise WiseFTError(f"{start_folder} and {end_folder} differ in architecture or preprocessing")
        self.start = {k: v.detach().clone() for k, v in start.state_dict().items()}
        self.end = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.folder = end_folder

    def at(self, alpha: float, batchnorm: str, train_images: np.ndarray, *, batch_size: int,
           device: torch.device) -> nn.Module:
        """The model at `alpha` (0: start, 1: fine-tuned); batchnorm re-estimate: its statistics measured on
        `train_images` (uint8 (N, C, H, W)) after mixing, interpolate: mixed with the weights."""
        if batchnorm not in BATCHNORM_MODES:
            raise ValueError(f"batchnorm must be one of {BATCHNORM_MODES}, not {batchnorm!r}")
        self.model.load_state_dict(interpolated_state(self.start, self.end, alpha))
        if batchnorm == "re-estimate":  # at the training batch size: the batch statistics the layers saw
            reestimate_batchnorm(self.model, train_images, self.card.normalisation, batch_size=batch_size,
                                 device=device)
        return self.model.eval()


def alpha_curve(ends: Endpoints, data: PreparedData, alphas: list[float], *, batch_size: int,
                device: torch.device) -> pd.DataFrame:
    """AUC and log-loss (uncalibrated) on validation and test at every alpha, batch-norm statistics interpolated
    and re-estimated: one row per (alpha, batchnorm, split). A study of the path, read by no one that chooses:
    the run's alpha is fixed in its settings."""
    train_images, _ = data.split("train")
    rows = []
    for alpha in alphas:
        for batchnorm in BATCHNORM_MODES:
            model = ends.at(alpha, batchnorm, train_images, batch_size=batch_size, device=device)
            for split in ("val", "test"):
                images, labels = data.split(split)
                if not len(labels):
                    continue
                logits = predict_run_logits(model, images, ends.card, device=device)
                labels_t = torch.as_tensor(labels)
                rows.append({"alpha": alpha, "batchnorm": batchnorm, "split": split,
                             "auc": float(auroc(logits.softmax(dim=1), labels_t)),
                             "log_loss": float(F.cross_entropy(logits, labels_t)),
                             "accuracy_argmax": float((logits.argmax(dim=1) == labels_t).float().mean())})
    return pd.DataFrame(rows)
