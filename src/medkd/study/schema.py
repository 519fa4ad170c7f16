"""The columns of a study's tables, spelled once: runs.csv (one row per run: its val and test scores at its
validation threshold, its cost; `ResultRow`) and summary.csv (one row per stage: each column's `mean` and `sd`
over seeds). The study writes them; the recommendation and the report read them through these names."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

STAGE, SEED = "stage", "seed"
PARAMETERS = "parameters"
MACS = "macs"
SIZE_MB = "size_mb"  # the checkpoint's size
LATENCY_MS = "latency_ms"  # median CPU latency of one image, PyTorch
LATENCY_P95_MS = "latency_p95_ms"
THROUGHPUT = "throughput"  # images/s at batch 32, PyTorch
TRAIN_SECONDS = "train_seconds"
INT8_TEST_AUC = "onnx_int8_test_auc"  # an exported run's int8 model on test


def score(split: str, metric: str) -> str:
    """A score at the run's validation threshold (argmax for multi-class): e.g. test_auc."""
    return f"{split}_{metric}"


def argmax_score(metric: str) -> str:
    """A test score at argmax, beside the one at the threshold: e.g. test_accuracy@argmax."""
    return f"test_{metric}@argmax"


def per_class_recall(split: str, class_name: str) -> str:
    """One class's recall (multi-class studies): e.g. test_recall[VIRUS]."""
    return f"{split}_recall[{class_name}]"


def engine_latency(engine: str) -> str:
    """An exported engine's median latency: e.g. onnx_int8_latency_ms."""
    return f"{engine}_{LATENCY_MS}"


def mean(column: str) -> str:
    """summary.csv's mean over seeds of a runs.csv column."""
    return f"{column}_mean"


def sd(column: str) -> str:
    """summary.csv's standard deviation over seeds of a runs.csv column (empty for one seed)."""
    return f"{column}_std"


class ResultRow(BaseModel):
    """One run's row of runs.csv. Its scores (`score(split, metric)` for every metric of evaluation.SCALARS,
    `argmax_score`, `per_class_recall`) and an export's (`engine_latency`, INT8_TEST_AUC) are further columns."""

    model_config = ConfigDict(extra="allow")

    stage: str
    seed: int
    parameters: int
    macs: float
    size_mb: float
    latency_ms: float
    latency_p95_ms: float
    throughput: float
    train_seconds: float
