"""The one Lightning Trainer of every medkd run (train, distill, pretrain): devices and precision from the device
policy, a CSV log per attempt (a resumed run adds one), TensorBoard, and the progress bar when asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import lightning as L
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from medkd.device import lightning_precision

LOG_EVERY_N_STEPS = 10


class RuntimeSettings(Protocol):
    """What a Trainer needs of a run's settings (TrainConfig and PretrainConfig both have it)."""

    epochs: int
    accelerator: str
    devices: int | str
    num_nodes: int
    precision: str


def build_trainer(settings: RuntimeSettings, out: Path, callbacks: list[Callback], *, show_progress: bool,
                  max_epochs: int | None = None) -> L.Trainer:
    """A Trainer writing its logs into run folder `out`; `max_epochs` overrides settings.epochs."""
    if show_progress:
        callbacks = [*callbacks, RichProgressBar()]
    return L.Trainer(
        max_epochs=max_epochs or settings.epochs, accelerator=settings.accelerator, devices=settings.devices,
        num_nodes=settings.num_nodes, precision=lightning_precision(settings.precision, settings.accelerator),
        callbacks=callbacks, logger=[CSVLogger(out, name="logs"), TensorBoardLogger(out, name="tensorboard", version="")],
        enable_progress_bar=show_progress, enable_model_summary=False, log_every_n_steps=LOG_EVERY_N_STEPS)
