"""A study folder: the names of its files, where each run lives, which runs are finished, their result rows,
and the record of every session that worked on it."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from medkd.config import Recipe
from medkd.environment import describe_environment
from medkd.evaluation import SCALARS, Evaluation
from medkd.files import (
    BACKBONE,
    BEST,
    EXPORT,
    EXPORT_REPORT,
    EXPORT_TEST_SCORES,
    METRICS,
    STUDY_SESSIONS,
    evaluation_file,
)
from medkd.study import schema
from medkd.study.plan import study_jobs
from medkd.study.schema import ResultRow


def run_folder(out: Path, stage: str, seed: int) -> Path:
    return out / stage / f"seed{seed}"


def is_evaluated(folder: Path) -> bool:
    """Whether the run in `folder` is finished: trained and evaluated on val and test."""
    return (folder / evaluation_file("test")).exists() and (folder / evaluation_file("val")).exists()


def is_exported(folder: Path) -> bool:
    """Whether the run in `folder` has been exported into its default export folder (RUN/export)."""
    return (folder / EXPORT / EXPORT_REPORT).exists()


def finished_runs(recipe: Recipe, out: Path) -> tuple[pd.DataFrame, list[tuple[str, int]]]:
    """The study's evaluated runs in OUT, one row each, and the (stage, seed) runs not evaluated yet
    (pretraining stages have no scores and count as neither)."""
    rows, missing = [], []
    for seed, stage in study_jobs(recipe):
        if stage.pretrain is None:
            folder = run_folder(out, stage.name, seed)
            if is_evaluated(folder):
                rows.append(result_row(folder, stage.name, seed))
            else:
                missing.append((stage.name, seed))
    return pd.DataFrame(rows), missing


def result_row(folder: Path, stage: str, seed: int) -> dict:
    """One run's row of runs.csv (schema.ResultRow, checked): its val and test scores at its validation threshold,
    and its cost; the columns in the order the table shows them."""
    row: dict = {schema.STAGE: stage, schema.SEED: seed}
    for split in ("val", "test"):
        result = Evaluation.read(folder, split)
        scores = result.at_threshold or result.at_argmax
        # NaN: a metric an evaluation from an older medkd lacks
        row.update({schema.score(split, name): scores.get(name, float("nan")) for name in SCALARS})
        if len(result.classes) > 2:  # a class the model misses hides in the macro means: keep each class's recall
            row.update({schema.per_class_recall(split, name): recall
                        for name, recall in zip(result.classes, scores["per_class"]["recall"])})
        if split == "test":
            row.update({schema.argmax_score(name): result.at_argmax[name]
                        for name in ("accuracy", "recall", "specificity")})
            cost = result.efficiency
            assert cost is not None  # a study measures every test evaluation's cost
            row.update({schema.PARAMETERS: cost["parameters"], schema.MACS: cost["macs"],
                        schema.SIZE_MB: cost["checkpoint_bytes"] / 1e6, schema.LATENCY_MS: cost["latency_ms_median"],
                        schema.LATENCY_P95_MS: cost["latency_ms_p95"],
                        schema.THROUGHPUT: cost["throughput_images_per_s"]})
    row[schema.TRAIN_SECONDS] = float(pd.read_csv(folder / METRICS)["seconds"].sum())
    if is_exported(folder):  # exported for deployment: what the deployed engines cost, and int8's test AUC
        export = json.loads((folder / EXPORT / EXPORT_REPORT).read_text())
        for engine, latency in export.get("latency_ms", {}).items():
            row[schema.engine_latency(engine)] = latency["median"]
        scored = folder / EXPORT / EXPORT_TEST_SCORES  # the study's evaluation of the exported engines
        if export.get("int8_path") and scored.exists():
            row[schema.INT8_TEST_AUC] = json.loads(scored.read_text())["onnx_int8"]["auc"]
    ResultRow.model_validate(row)  # the schema the report reads
    return row


def read_sessions(out: Path) -> list[dict]:
    """The record of every `medkd run` invocation on the study folder OUT (oldest first)."""
    path = out / STUDY_SESSIONS
    return json.loads(path.read_text())["sessions"] if path.exists() else []


def session_record(started: float, jobs_run: int, *, ended: bool) -> dict:
    """This invocation: command, start, wall time so far, runs trained, whether it ended, and the machine."""
    return {"command": " ".join(sys.argv),
            "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
            "wall_seconds": round(time.time() - started, 1), "jobs_run": jobs_run, "ended": ended,
            "environment": describe_environment()}


def starting_weights_file(out: Path, stage: str, seed: int) -> Path:
    """The file a stage with `weights_from: stage` starts from: that run's backbone (pretraining) or model."""
    source = run_folder(out, stage, seed)
    return source / (BACKBONE if (source / BACKBONE).exists() else BEST)
