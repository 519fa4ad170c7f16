"""Callbacks of the engine: a per-epoch metrics table that survives being killed and resumed."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import lightning as L

EPOCH_COLUMNS = ["epoch", "train_loss", "val_loss", "val_auc", "val_acc", "lr", "seconds"]


class EpochMetricsCSV(L.Callback):
    """One row per finished epoch in `path`; on resume, rows of epochs not yet re-reached are dropped. In a
    distributed run only global rank 0 writes (its metrics are every process's: see ClassifierModule).

    The columns are epoch, `metric_columns`, `extra_columns`, lr (the last parameter group's: the head's) and
    seconds (the epoch's wall-clock time); a metric not logged in an epoch is left empty.

    Parameters
    ----------
    path : Path
        The CSV file (a run's metrics.csv).
    extra_columns : tuple of str, default ()
        Further logged metrics, after the usual ones (e.g. a distillation's).
    metric_columns : tuple of str, default ("train_loss", "val_loss", "val_auc", "val_acc")
        The logged metrics written after the epoch.
    """

    def __init__(self, path: Path, extra_columns: tuple[str, ...] = (),
                 metric_columns: tuple[str, ...] = tuple(EPOCH_COLUMNS[1:5])) -> None:
        self.path = path
        self.columns = ["epoch", *metric_columns, *extra_columns, "lr", "seconds"]
        self._started = 0.0

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Write the header, keeping the rows of epochs before the one training starts at (a resumed run's)."""
        # after Lightning restored a resumed run's epoch counter
        if not trainer.is_global_zero:
            return
        rows = []
        if self.path.exists():
            with open(self.path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) < trainer.current_epoch]
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns)
            writer.writeheader()
            writer.writerows(rows)

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Start the epoch's clock."""
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Append the finished epoch's row (not during the sanity check)."""
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch, "lr": trainer.optimizers[0].param_groups[-1]["lr"],
               "seconds": round(time.perf_counter() - self._started, 3)}
        for key in self.columns:
            if key not in row:
                row[key] = float(metrics[key]) if key in metrics else ""
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, self.columns).writerow(row)
