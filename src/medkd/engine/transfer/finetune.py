"""finetune: every layer trains from pretrained weights; the backbone at optimiser.backbone_lr_scale x the head's
learning rate."""

from __future__ import annotations

from typing import Literal

from medkd.engine.transfer.base import TransferMode, TransferSettings, register_transfer


class FinetuneSettings(TransferSettings):
    name: Literal["finetune"] = "finetune"


@register_transfer("finetune")
class Finetune(TransferMode):
    Settings = FinetuneSettings

    def backbone_lr_scale(self) -> float:
        return self.train.optimiser.backbone_lr_scale
