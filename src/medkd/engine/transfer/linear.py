"""linear: the backbone frozen, its features computed once and cached, a linear head trained on them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medkd.engine.transfer.base import TransferMode, TransferSettings, register_transfer

if TYPE_CHECKING:
    from torch import nn


class LinearSettings(TransferSettings):
    name: Literal["linear"] = "linear"


@register_transfer("linear")
class Linear(TransferMode):
    Settings = LinearSettings
    trains_backbone = False

    def trained_part(self, model, data, splits, *, mean, std, placement) -> nn.Module:
        from medkd.evaluation import backbone_identity, cached_features
        from medkd.models import classifier_name

        identity = backbone_identity(self.train, data.config.preprocessing.input_channels,
                                     getattr(model, "medkd_weights_source", None))
        for split, (_, labels) in list(splits.items()):
            features, _ = cached_features(model, identity, data, split, mean=mean, std=std,
                                          precision_bf16=placement.bf16, device=placement.device)
            splits[split] = (features, labels)
        return model.get_submodule(classifier_name(model))

    def card_entries(self, out: Path) -> dict[str, Any]:
        return {"frozen_backbone": True}
