"""A transfer mode: how a run starts from its weights and what it trains. One class per mode, registered by name
with its own settings (as a KD loss is): fit() asks the mode and names none."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from medkd.registry import Registry
from medkd.settings import StrictModel

if TYPE_CHECKING:
    import torch
    from torch import nn

    from medkd.data import DataConfig, PreparedData
    from medkd.device import Placement
    from medkd.engine.config import TrainConfig


class TransferSettings(StrictModel):
    """A transfer mode's settings: `name` is the registered mode; a mode's subclass adds its own keys."""

    name: str


class TransferMode:
    """The base of every transfer mode: scratch-like behaviour, which a mode changes where it differs.

    Parameters
    ----------
    settings : TrainConfig
        The run's settings; `settings.transfer` is of this mode's `Settings`.
    """

    Settings: ClassVar[type[TransferSettings]] = TransferSettings
    trains_backbone: ClassVar[bool] = True  # False: only the head trains (distillation and augmentation need True)
    expects_pretrained: ClassVar[bool] = True  # a report warns when such a run starts from random weights

    def __init__(self, settings: TrainConfig) -> None:
        self.train = settings
        self.settings = settings.transfer

    def before_training(self, data_config: DataConfig, out: Path, *, show_progress: bool) -> None:
        """Steps before the run is seeded (e.g. lp-ft's probe, a run folder inside `out`); none by default."""

    def build_model(self, in_chans: int, classes: list[str], out: Path) -> nn.Module:
        """The whole network, from the run's starting weights."""
        from medkd.models import create_model

        return create_model(self.train.model, num_classes=len(classes), in_chans=in_chans,
                            weights=self.train.weights, **self.train.model_args)

    def backbone_lr_scale(self) -> float:
        """The backbone's learning rate as a share of the head's."""
        return 1.0

    def trained_part(self, model: nn.Module, data: PreparedData, splits: dict[str, tuple[torch.Tensor, ...]], *,
                     mean: list[float], std: list[float], placement: Placement) -> nn.Module:
        """What the optimiser trains: the whole `model` by default. A mode that trains a part may replace the
        images of `splits` (e.g. by cached features) and then returns that part; its inputs are not normalised."""
        return model

    def card_entries(self, out: Path) -> dict[str, Any]:
        """Entries of the run's card (model.json) that this mode adds."""
        return {}


TRANSFER_MODES: Registry[type[TransferMode]] = Registry("transfer mode")


def register_transfer(name: str):
    """Class decorator: register a TransferMode subclass as `name` (its Settings' `name`)."""
    return TRANSFER_MODES.register(name)


def transfer_settings(value: str | Mapping[str, Any] | TransferSettings) -> TransferSettings:
    """A registered mode's validated settings from its name, a mapping {name: ..., its keys}, or settings."""
    return TRANSFER_MODES.settings_of(value, TransferSettings)


def transfer_mode(settings: TrainConfig) -> TransferMode:
    """The registered mode of `settings.transfer`, for this run."""
    return TRANSFER_MODES[settings.transfer.name](settings)


def transfer_mode_class(name: str) -> type[TransferMode]:
    """The class registered as `name`, for what a mode is (e.g. whether it trains its backbone)."""
    if name not in TRANSFER_MODES:
        raise ValueError(f"unknown transfer mode {name!r}: registered modes are {sorted(TRANSFER_MODES)}")
    return TRANSFER_MODES[name]
