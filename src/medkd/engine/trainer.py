"""The one Lightning Trainer of every medkd run (train, distill, pretrain): devices and precision from the device
policy, a CSV log per attempt (a resumed run adds one), TensorBoard, and the progress bar when asked for."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from medkd.device import RuntimeConfig, lightning_precision

LOG_EVERY_N_STEPS = 10


def build_trainer(runtime: RuntimeConfig, max_epochs: int, out: Path, callbacks: list[Callback], *,
                  show_progress: bool) -> L.Trainer:
    """A Trainer for `max_epochs` epochs on `runtime`'s devices, writing its logs into run folder `out`."""
    if show_progress:
        callbacks = [*callbacks, RichProgressBar()]
    return L.Trainer(
        max_epochs=max_epochs, accelerator=runtime.accelerator, devices=runtime.devices, num_nodes=runtime.num_nodes,
        precision=lightning_precision(runtime.precision, runtime.accelerator),
        callbacks=callbacks, logger=[CSVLogger(out, name="logs"), TensorBoardLogger(out, name="tensorboard", version="")],
        enable_progress_bar=show_progress, enable_model_summary=False, log_every_n_steps=LOG_EVERY_N_STEPS)
