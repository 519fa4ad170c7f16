"""The run folder's contract: the name of every file a run folder holds, and how each one is written (whole or
not at all, so a killed process never leaves half a file that marks work as done), and the one way medkd
fingerprints what it caches.

Every package names a run's files through these constants; docs/architecture.md lists who writes each.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

# ---- a run folder (engine, distillation, pretrain, evaluation, deploy) ----------------------------------------
CONFIG = "config.yaml"  # the resolved data and train (distill, pretrain) settings
METRICS = "metrics.csv"  # one row per epoch
CHECKPOINTS = "checkpoints"  # Lightning's checkpoints of the run
BEST_CHECKPOINT = "best"  # CHECKPOINTS/best.ckpt: Lightning's checkpoint of the epoch chosen on validation
LAST_CHECKPOINT = "last"  # CHECKPOINTS/last.ckpt: Lightning's checkpoint of the latest epoch
RESUME_CHECKPOINT = f"{CHECKPOINTS}/{LAST_CHECKPOINT}.ckpt"  # a killed run resumes from this
SKIPPED_FILES = "skipped_files.csv"  # files of the data that could not be read
DATA_LOCATION = "data_location.json"  # where the data was found when the run was trained
TRACKING_RUN = "tracking.json"  # a tracked run (or study) folder: its MLflow store and run id
RUN_CARD = "model.json"  # what rebuilds the model: architecture, classes, preprocessing, threshold, ...
BEST = "model.safetensors"  # weights of the epoch chosen on validation
LAST = "last.safetensors"  # weights of the last epoch
PROBE = "probe"  # an lp-ft run's linear-probe step: a run folder inside the run folder
OOD_GUARD = "ood_guard.safetensors"  # the out-of-distribution guard: class means and shared precision matrix
EVALUATION_FOLDER = "evaluation"  # EVALUATION_FOLDER/{split}.json and EVALUATION_FOLDER/{split}_predictions.csv
TEACHER_LOGITS = "teacher_logits.safetensors"  # a distilled run's cached teacher outputs
DISTILLATION_REPORT = "distillation.json"  # teacher-student agreement
BACKBONE = "backbone.safetensors"  # a pretraining run's backbone, without its head
PRETRAIN_REPORT = "pretrain.json"  # what the backbone is and how it was trained
EXPORT = "export"  # the default export folder; EXPORT/EXPORT_REPORT describes what is in it
EXPORT_REPORT = "export.json"
EXPORT_TEST_SCORES = "test_scores.json"  # in an export folder: each engine's test scores, for a study's report
ONNX_FP32 = "model.onnx"  # in an export folder: the deployed graph (uint8 in, probabilities and guard scores out)
ONNX_INT8 = "model.int8.onnx"  # its int8 quantisation
TORCHSCRIPT = "model.torchscript.pt"  # export format torchscript, with its model card beside it
TORCHSCRIPT_CARD = "model.torchscript.json"
SWEEP = "sweep.csv"  # medkd distill --sweep: one row per teacher set (each teacher alone, their ensemble)

# ---- a study folder (medkd run) ----------------------------------------------------------------------------------
RECIPE = "recipe.yaml"  # the recipe as run (presets and options applied)
DATA_CHECK = "data_check.json"  # the data check of the study's data
STUDY_SESSIONS = "study.json"  # each invocation: start, end, environment
RUNS = "runs.csv"  # one row per run and split (study.ResultRow's columns)
SUMMARY = "summary.csv"  # per stage and split: mean and sd over seeds
REPORT_MARKDOWN = "report.md"
REPORT_HTML = "report.html"  # self-contained: figures inline
FOLD = "fold{fold}"  # a cross-validated study: FOLD/ is fold k's study folder (its runs, tables and report)
FOLD_RUNS = "folds_runs.csv"  # every fold's runs.csv rows, with their fold
FOLD_SUMMARY = "folds_summary.csv"  # per stage and split: mean and sd over folds (of each fold's mean over seeds)
FOLD_POOLED = "folds_pooled.csv"  # per stage and seed: the held-out folds' predictions pooled and scored
SITE_STUDY = "site_study"  # SITE_STUDY/SITE_STUDY_TABLE (every run, split and variant) and SITE_STUDY_MARKDOWN
SITE_STUDY_TABLE = "site_study.csv"
SITE_STUDY_MARKDOWN = "site_study.md"


def evaluation_file(split: str) -> str:
    """The scores of `split`, relative to the run folder."""
    return f"{EVALUATION_FOLDER}/{split}.json"


def predictions_file(split: str) -> str:
    """The per-image probabilities of `split`, relative to the run folder."""
    return f"{EVALUATION_FOLDER}/{split}_predictions.csv"


# ---- the cache (MEDKD_CACHE or data.cache_dir) -----------------------------------------------------------------
DECODED_CACHE = "decoded"  # DECODED_CACHE/{fingerprint}/: a source's images decoded to the working size
SOURCE_INDEX_CACHE = "sources"  # SOURCE_INDEX_CACHE/{fingerprint}.csv: what a source read of every file (MRI)
SPLITS_CACHE = "splits"  # SPLITS_CACHE/{fingerprint}.npy: patient-level folds computed before
FEATURES_CACHE = "features"  # FEATURES_CACHE/{fingerprint}.npy|.onnx: a frozen backbone's features, its ONNX graph
MEDMNIST_DOWNLOADS = "medmnist"  # MEDMNIST_DOWNLOADS/{name}[_{size}].npz: MedMNIST files as downloaded

# ---- writing whole ---------------------------------------------------------------------------------------------
@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` when the block ends without an error
    (atomic on one file system), removed otherwise."""
    path = Path(path)
    staging = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        yield staging
        staging.replace(path)
    finally:
        staging.unlink(missing_ok=True)


@contextmanager
def one_writer(path: Path) -> Iterator[None]:
    """Hold PATH.lock for the block. Processes that would compute the same cached file at once (the ranks of a
    distributed run started together by torchrun or SLURM) take turns: the first computes and writes it, the others
    find it written when they get the lock."""
    from filelock import FileLock

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        yield


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all."""
    with staged(path) as staging:
        staging.write_text(text)


def write_json(path: Path, data: Any) -> None:
    """Write `data` as indented JSON to `path`, whole or not at all."""
    write_text_atomically(path, json.dumps(data, indent=2))


def write_yaml(path: Path, data: Any) -> None:
    """Write `data` as YAML (keys in their order) to `path`, whole or not at all."""
    write_text_atomically(path, yaml.safe_dump(data, sort_keys=False))


# ---- fingerprints ----------------------------------------------------------------------------------------------
def fingerprint(identity: Any, length: int = 64) -> str:
    """A hex digest of a JSON-able `identity` (keys sorted): cache keys and "is this still the same input"
    checks across medkd (decode cache, feature cache, teacher logits)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:length]


def bytes_fingerprint(data: bytes, length: int = 64) -> str:
    """A hex digest of raw bytes (image rows, weight files)."""
    return hashlib.sha256(data).hexdigest()[:length]
