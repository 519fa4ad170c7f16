"""WiSE-FT (Wortsman et al., CVPR 2022): an lp-ft run's weights interpolated between where fine-tuning started
(its probe-initialised model, in the run's probe folder) and where it ended, theta(alpha) = (1 - alpha) *
theta_start + alpha * theta_fine-tuned, then calibrated, thresholded and guarded on the source run's validation
split as a trained model is. Batch-norm networks fall off the path when their running statistics are averaged with
the weights (issue 31: Lite0 at alpha 0.5 and 0.75 lost validation AUC), so by default the statistics are measured
again on the training images after mixing (torch's update_bn)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from medkd.derive.base import DerivedRunMethod, DeriveSettings, register_derived_run
from medkd.errors import MedkdError
from medkd.files import BEST, CONFIG, METRICS, PROBE

if TYPE_CHECKING:
    import torch


class WiseFTError(MedkdError):
    """A WiSE-FT run whose endpoints cannot be found or do not match; the message says what to do."""


class WiseFTSettings(DeriveSettings):
    name: Literal["wise-ft"] = "wise-ft"
    alpha: float = Field(0.5, ge=0, le=1, description="0: the probe-initialised model, 1: the fine-tuned one; fixed "
                                                       "before any test score is seen (0.5: the paper's)")
    batchnorm: Literal["re-estimate", "interpolate"] = Field(
        "re-estimate", description="re-estimate: batch-norm statistics measured again on the training images after "
                                   "mixing; interpolate: mixed like the weights")


def interpolated_state(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor],
                       alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) * start + alpha * end for every floating-point tensor (batch-norm running statistics too);
    integer buffers (batch-norm's step counts) are the end's."""
    import torch

    if start.keys() != end.keys():
        raise WiseFTError(f"the two models hold other tensors ({sorted(set(start) ^ set(end))[:3]}): WiSE-FT needs "
                          "one architecture at both ends")
    return {name: torch.lerp(start[name].float(), end[name].float(), alpha).to(end[name].dtype)
            if end[name].is_floating_point() else end[name].clone() for name in end}


@register_derived_run("wise-ft")
class WiseFT(DerivedRunMethod):
    Settings = WiseFTSettings
    settings: WiseFTSettings

    def derive(self, source, inputs, out):
        import pandas as pd
        import torch
        import yaml

        from medkd.engine import (
            EPOCH_COLUMNS,
            TrainConfig,
            auroc,
            build_augmentation,
            calibrate_on_validation,
            classification_loss,
            feature_guard,
        )
        from medkd.evaluation import predict_run_logits
        from medkd.models import SourceRecord, load_model, reestimate_batchnorm

        started = time.perf_counter()
        if not (source / PROBE / BEST).exists():
            raise WiseFTError(f"{source} has no probe ({source / PROBE / BEST}): WiSE-FT interpolates between an "
                              "lp-ft run's probe-initialised model and its fine-tuned one; train the source stage "
                              "with transfer: lp-ft")
        start, start_card = load_model(source / PROBE)
        model, card = load_model(source)
        if start_card.architecture != card.architecture or start_card.preprocessing != card.preprocessing:
            raise WiseFTError(f"{source / PROBE} and {source} differ in architecture or preprocessing")
        train = TrainConfig.model_validate(yaml.safe_load((source / CONFIG).read_text())["train"])
        data = inputs.source_data()
        model.load_state_dict(interpolated_state(start.state_dict(), model.state_dict(), self.settings.alpha))
        if self.settings.batchnorm == "re-estimate":  # at the training batch size: the statistics the layers saw
            reestimate_batchnorm(model, data.split("train")[0], card.normalisation, batch_size=train.batch_size)
        model.eval()
        device = torch.device("cpu")
        card = card.model_copy(update={"epochs_trained": 0, "best_checkpoint": None, "probe": None, "ood": None,
                                       "calibration": None, "threshold": None,
                                       "source": SourceRecord(name=data.source.source,
                                                              settings=data.source.source_settings)})
        val_images, val_labels = data.split("val")
        val_logits = predict_run_logits(model, val_images, card, device=device)  # once: calibration and metrics
        card = calibrate_on_validation(model, data, card, train.calibration, train.threshold, device,
                                       val_logits=val_logits)
        labels = torch.as_tensor(val_labels)
        val_auc = float(auroc(val_logits.softmax(dim=1), labels))
        guard = feature_guard(model, data, card, train.guard, build_augmentation(train.augment), train.seed, device,
                              out)
        card = card.model_copy(update={"best_val_auc": val_auc, "ood": guard})
        row = {"epoch": 0, "val_loss": float(classification_loss(val_logits, labels, train.loss)), "val_auc": val_auc,
               "val_acc": float((val_logits.argmax(dim=1) == labels).float().mean()),
               "seconds": round(time.perf_counter() - started, 3)}
        pd.DataFrame([row], columns=EPOCH_COLUMNS).to_csv(Path(out) / METRICS, index=False)
        return model, card, {"alpha": self.settings.alpha, "batchnorm": self.settings.batchnorm,
                             "fine_tuned": str(source.resolve())}
