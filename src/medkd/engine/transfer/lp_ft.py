"""lp-ft (Kumar et al., ICLR 2022): a linear probe on the frozen backbone first (a run folder OUT/probe), then
every layer fine-tuned from it, the backbone at optimiser.backbone_lr_scale x the head's learning rate."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from medkd.engine.transfer.base import TransferMode, TransferSettings, register_transfer
from medkd.files import BEST, PROBE
from medkd.settings import StrictModel

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


class ProbeConfig(StrictModel):
    """LP-FT's first step: the head trained alone on the frozen backbone's cached features."""

    epochs: int = Field(20, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)


class LpFtSettings(TransferSettings):
    name: Literal["lp-ft"] = "lp-ft"
    probe: ProbeConfig = Field(default_factory=ProbeConfig, description="the linear-probe step")


@register_transfer("lp-ft")
class LpFt(TransferMode):
    Settings = LpFtSettings
    settings: LpFtSettings

    def before_training(self, data_config, out: Path, *, show_progress: bool) -> None:
        """The probe, in OUT/probe (skipped when finished: a killed lp-ft run resumes after it)."""
        from medkd.engine.fit import fit

        folder = out / PROBE
        if (folder / BEST).exists():
            log.info("lp-ft: linear probe finished before (%s)", folder)
            return
        probe, raw = self.settings.probe, self.train.model_dump()
        raw.update(transfer={"name": "linear"}, epochs=probe.epochs, min_steps=None, early_stopping_patience=None)
        raw["optimiser"].update(lr=probe.lr, weight_decay=probe.weight_decay)
        raw["schedule"].update(warmup_epochs=0.0)
        probe_settings = type(self.train).model_validate(raw)
        log.info("lp-ft: training the linear probe (%d epochs on cached features)", probe.epochs)
        fit(data_config, probe_settings, folder, show_progress=show_progress)

    def build_model(self, in_chans: int, classes: list[str], out: Path) -> nn.Module:
        from medkd.models import read_state_dict

        model = super().build_model(in_chans, classes, out)
        model.load_state_dict(read_state_dict(out / PROBE / BEST))  # the same backbone, the probe's trained head
        return model

    def backbone_lr_scale(self) -> float:
        return self.train.optimiser.backbone_lr_scale

    def card_entries(self, out: Path) -> dict[str, Any]:
        from medkd.models import ProbeRecord, RunCard

        return {"probe": ProbeRecord(folder=PROBE, best_val_auc=RunCard.read(out / PROBE).best_val_auc)}
