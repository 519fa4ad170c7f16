"""Experiment tracking in MLflow (`runtime.tracking: mlflow[:URI]`, `--tracking`; the extra medkd[mlflow]).

A run logs through Lightning's MLFlowLogger (its per-epoch metrics) with its resolved settings (config.yaml) as
parameters; its evaluation's scores, run card, evaluation files and exported ONNX are added when they are written.
A study is a parent run with its runs as children. The store is URI, else $MLFLOW_TRACKING_URI, else a local
SQLite file beside the runs (OUT/mlflow.db for a study, the run folder's parent for a single run), with the
artefacts beside it (mlartifacts/): `mlflow ui --backend-store-uri sqlite:///OUT/mlflow.db` browses it. Each run
folder keeps its MLflow run id (TRACKING_RUN), so a resumed run continues its MLflow run. CSV and TensorBoard logs
stay as they are.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medkd.errors import MedkdError
from medkd.files import (
    CONFIG,
    EXPORT,
    EXPORT_REPORT,
    ONNX_FP32,
    ONNX_INT8,
    RUN_CARD,
    TRACKING_RUN,
    evaluation_file,
    predictions_file,
)

log = logging.getLogger(__name__)
MLFLOW = "mlflow"
STORE_FILE = "mlflow.db"  # the default local store, beside the runs
ARTIFACTS = "mlartifacts"  # the default store's artefacts, beside it
EXPERIMENT = "medkd"  # the experiment of runs outside a study


class TrackingError(MedkdError):
    """Tracking asked for but not possible (MLflow missing, a store that cannot be opened): what to do."""


def check_tracking(value: str | None) -> str | None:
    """`value` if it names a tracker medkd has (mlflow, mlflow:URI) and that tracker is installed."""
    if value is None:
        return None
    kind, _, _ = value.partition(":")
    if kind != MLFLOW:
        raise ValueError(f"unknown tracking {value!r}: use mlflow or mlflow:URI (e.g. mlflow:http://host:5000)")
    if importlib.util.find_spec("mlflow") is None:
        raise ValueError("tracking with mlflow needs MLflow: pip install 'medkd[mlflow]'")
    return value


@dataclass(frozen=True)
class Study:
    """The study a run belongs to: its MLflow experiment, parent run and store."""

    experiment: str
    parent_run_id: str
    uri: str


_STUDY: ContextVar[Study | None] = ContextVar("medkd_tracking_study", default=None)


# The stores medkd chose in this process. MLflow's set_tracking_uri (which Lightning's logger calls) also writes
# $MLFLOW_TRACKING_URI, so a value found there that medkd put there is not the user's choice.
_CHOSEN: set[str] = set()


def store_uri(value: str, beside: Path) -> str:
    """The store of `value` (mlflow:URI), else the user's $MLFLOW_TRACKING_URI, else SQLite in folder `beside`."""
    _, _, uri = value.partition(":")
    environment = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri and environment and environment not in _CHOSEN:
        return environment
    uri = uri or f"sqlite:///{(beside / STORE_FILE).resolve()}"
    _CHOSEN.add(uri)
    return uri


def _client(uri: str):
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise TrackingError("tracking with mlflow needs MLflow: pip install 'medkd[mlflow]'") from None
    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, name: str, uri: str, beside: Path) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    local = uri == f"sqlite:///{(beside / STORE_FILE).resolve()}"
    return client.create_experiment(name, artifact_location=(beside / ARTIFACTS).resolve().as_uri() if local else None)


@contextmanager
def study_tracking(value: str | None, out: Path, name: str, params: dict[str, Any]) -> Iterator[Study | None]:
    """Inside the block, runs are children of the study's parent run (made once, its id kept in OUT/TRACKING_RUN,
    so a study run again continues it); nothing without `value`."""
    if value is None:
        yield None
        return
    uri, record = store_uri(value, out), out / TRACKING_RUN
    client = _client(uri)
    if record.exists():
        run_id = json.loads(record.read_text())["run_id"]
    else:
        run = client.create_run(_experiment_id(client, name, uri, out), run_name=name, tags={"medkd.kind": "study"})
        run_id = run.info.run_id
        for key, value_ in _flat(params).items():
            client.log_param(run_id, key, value_)
        out.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"uri": uri, "run_id": run_id, "experiment": name}))
    study = Study(name, run_id, uri)
    token = _STUDY.set(study)
    try:
        yield study
    finally:
        _STUDY.reset(token)


@contextmanager
def within_study(study: Study | None) -> Iterator[None]:
    """Runs inside the block belong to `study` (a worker process of a study, which has no block of its own)."""
    token = _STUDY.set(study)
    try:
        yield
    finally:
        _STUDY.reset(token)


def trainer_logger(value: str, out: Path):
    """Lightning's MLFlowLogger for run folder `out`: the study's child run (or a run of EXPERIMENT), continued
    when the folder has one already; its parameters are the run's resolved settings (out/CONFIG)."""
    from lightning.pytorch.loggers import MLFlowLogger

    study, record = _STUDY.get(), out / TRACKING_RUN
    uri = study.uri if study is not None and value == MLFLOW else store_uri(value, out.parent)
    experiment = study.experiment if study is not None else EXPERIMENT
    if record.exists():
        saved = json.loads(record.read_text())
        return MLFlowLogger(experiment_name=experiment, tracking_uri=saved["uri"], run_id=saved["run_id"])
    client = _client(uri)
    _experiment_id(client, experiment, uri, (out.parent.parent if study is not None else out.parent))
    tags = {"medkd.kind": "run", "medkd.folder": str(out.resolve())}
    if study is not None:
        tags["mlflow.parentRunId"] = study.parent_run_id
    logger = MLFlowLogger(experiment_name=experiment, run_name=f"{out.parent.name}/{out.name}", tracking_uri=uri,
                          tags=tags)
    if (out / CONFIG).exists():
        logger.log_hyperparams(_flat(yaml.safe_load((out / CONFIG).read_text())))
    out.mkdir(parents=True, exist_ok=True)
    (out / TRACKING_RUN).write_text(json.dumps({"uri": uri, "run_id": logger.run_id, "experiment": experiment}))
    return logger


def _tracked(folder: Path):
    """(client, run id) of a tracked run or study folder (its TRACKING_RUN record), else None."""
    record = folder / TRACKING_RUN
    if not record.exists():
        return None
    saved = json.loads(record.read_text())
    return _client(saved["uri"]), saved["run_id"]


def log_evaluation(folder: str | Path, split: str) -> None:
    """Add a tracked run's evaluation on `split` to its MLflow run: the scores at its threshold (SPLIT/METRIC),
    the evaluation files, the run card and settings. Nothing for a folder that is not tracked."""
    folder = Path(folder)
    tracked = _tracked(folder)
    if tracked is None:
        return
    client, run_id = tracked
    result = json.loads((folder / evaluation_file(split)).read_text())
    for name, value in (result.get("at_threshold") or result["at_argmax"]).items():
        if isinstance(value, int | float) and value == value:  # NaN (undefined) is left out
            client.log_metric(run_id, f"{split}/{name}", float(value))
    for path in (folder / RUN_CARD, folder / CONFIG, folder / evaluation_file(split),
                 folder / predictions_file(split)):
        if path.exists():
            inside = path.parent.relative_to(folder)  # evaluation/ files keep their folder
            client.log_artifact(run_id, str(path), artifact_path=None if inside == Path() else str(inside))


def log_export(folder: str | Path, exported: Path) -> None:
    """Add a tracked run's exported models (ONNX fp32 and int8) and the export's report to its MLflow run."""
    tracked = _tracked(Path(folder))
    if tracked is None:
        return
    client, run_id = tracked
    for name in (ONNX_FP32, ONNX_INT8, EXPORT_REPORT):
        if (exported / name).exists():
            client.log_artifact(run_id, str(exported / name), artifact_path=EXPORT)


def log_study_results(out: Path, files: list[Path]) -> None:
    """Add a study's tables and report to its parent run (nothing for an untracked study)."""
    tracked = _tracked(out)
    if tracked is None:
        return
    client, run_id = tracked
    for path in files:
        if path.exists():
            client.log_artifact(run_id, str(path))


def _flat(values: dict, prefix: str = "") -> dict[str, Any]:
    """Nested settings as MLflow parameters: keys joined with '.', lists and None as text."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | dict) or value is None else value
    return flat
