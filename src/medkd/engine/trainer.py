"""The one Lightning Trainer of every medkd run (train, distill, pretrain): devices and precision from the device
policy, a CSV log per attempt (a resumed run adds one), TensorBoard, and the progress bar when asked for."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from medkd.device import RuntimeConfig, is_primary_process, lightning_precision
from medkd.tracking import trainer_logger

LOG_EVERY_N_STEPS = 10
# Lightning's notices that say nothing about the user's run, silenced while medkd trains (and only then).
LIGHTNING_NOTICES = (
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*overridden `on_after_batch_transfer`.*",
    r".*smaller than the logging interval.*",
    r".*module\(s\) in eval mode at the start of training.*",  # a distilled run's frozen teacher is, on purpose
    # the sanity check scores two validation batches, which may hold one class only: its AUC means nothing
    r".*No (positive|negative) samples in targets.*",
)
LIGHTNING_LOG_NOTICES = re.compile(r"litlogger")  # Lightning's advertisement of its hosted logger


def build_trainer(runtime: RuntimeConfig, max_epochs: int, out: Path, callbacks: list[Callback], *,
                  show_progress: bool) -> L.Trainer:
    """A Trainer for `max_epochs` epochs on `runtime`'s devices, writing its logs into run folder `out`.

    Parameters
    ----------
    runtime : RuntimeConfig
        Accelerator, devices, nodes and precision (through the device policy's lightning_precision).
    max_epochs : int
    out : Path
        The run folder: a CSV log per attempt under logs/, TensorBoard's under tensorboard/ (and MLflow's run
        with runtime.tracking, medkd.tracking).
    callbacks : list of Callback
        The run's callbacks; a progress bar is added with `show_progress`.
    show_progress : bool
        Rich's progress bar.

    Returns
    -------
    L.Trainer
    """
    if show_progress:
        callbacks = [*callbacks, RichProgressBar()]
    loggers: list[Logger] = [CSVLogger(out, name="logs"), TensorBoardLogger(out, name="tensorboard", version="")]
    if runtime.tracking is not None and is_primary_process():  # Lightning logs from rank 0 only
        loggers.append(trainer_logger(runtime.tracking, out))
    with lightning_notices_silenced():  # Lightning logs its hosted logger's advertisement while it sets up
        return L.Trainer(
            max_epochs=max_epochs, accelerator=runtime.accelerator, devices=runtime.devices,
            num_nodes=runtime.num_nodes, precision=lightning_precision(runtime.precision, runtime.accelerator),
            callbacks=callbacks, logger=loggers,
            enable_progress_bar=show_progress, enable_model_summary=False, log_every_n_steps=LOG_EVERY_N_STEPS)


class _DropNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not LIGHTNING_LOG_NOTICES.search(record.getMessage())


@contextmanager
def lightning_notices_silenced() -> Iterator[None]:
    """LIGHTNING_NOTICES (warnings) and LIGHTNING_LOG_NOTICES (log records) dropped inside the block; the
    caller's warning filters and loggers are as they were afterwards. A context manager:
    `with lightning_notices_silenced(): trainer.fit(...)`."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    drop = _DropNotices()
    rank_zero.addFilter(drop)
    try:
        with warnings.catch_warnings():
            for message in LIGHTNING_NOTICES:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        rank_zero.removeFilter(drop)
