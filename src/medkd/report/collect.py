"""Everything a study folder holds that its report shows, read once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from medkd.config import Recipe
from medkd.errors import MedkdError
from medkd.evaluation import Evaluation
from medkd.files import DATA_CHECK, METRICS, RECIPE, evaluation_file, predictions_file
from medkd.models import RunCard
from medkd.study import (
    Recommendation,
    finished_runs,
    matched_controls,
    read_sessions,
    recommend,
    run_folder,
    summarise,
)


class ReportError(MedkdError):
    """A study folder without what its report needs; the message says what is missing and how to get it."""


@dataclass
class StudyResults:
    """A finished (or partly finished) study: its recipe, one row per run, and access to each run's files."""

    folder: Path
    recipe: Recipe
    runs: pd.DataFrame
    missing: list[tuple[str, int]]  # (stage, seed) runs the recipe asks for that have not been evaluated yet
    summary: pd.DataFrame
    recommendation: Recommendation
    controls: dict[str, list[str]]  # each distilled stage's controls: no KD, then label smoothing
    label_efficiency: dict[str, dict[float, str]]  # label_fractions(recipe)
    classes: list[str]
    data_check: dict | None
    sessions: list[dict]
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def recommended(self) -> str:
        return self.recommendation.stage

    @property
    def stages(self) -> list[str]:
        return list(self.summary.index)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.runs["seed"].unique().tolist())

    def seeds_of(self, stage: str) -> list[int]:
        """The seeds evaluated for `stage` (fewer than the recipe's while the study is unfinished)."""
        return sorted(self.runs.loc[self.runs["stage"] == stage, "seed"].tolist())

    def run(self, stage: str, seed: int) -> Path:
        return run_folder(self.folder, stage, seed)

    def card(self, stage: str, seed: int) -> RunCard:
        """The run's card (model.json): architecture, preprocessing, where its starting weights came from, ..."""
        return self._read(self.run(stage, seed), RunCard.read)

    def evaluation(self, stage: str, seed: int, split: str = "test") -> Evaluation:
        """The run's evaluation on `split` (typed: evaluation.Evaluation)."""
        folder = self.run(stage, seed)
        return self._read(folder / evaluation_file(split), lambda _: Evaluation.read(folder, split))

    def predictions(self, stage: str, seed: int, split: str = "test") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Labels, class probabilities and decisions (at the run's validation threshold) of one run."""
        table = self._read(self.run(stage, seed) / predictions_file(split), pd.read_csv)
        return (table["label"].to_numpy(), table[[f"p_{name}" for name in self.classes]].to_numpy(),
                table["predicted"].to_numpy())

    def same_test_images(self, first: str, second: str, seed: int) -> bool:
        """Whether two runs were scored on the same test images in the same order (their predictions' refs and
        labels): what a paired test needs. Stages on different data (another source, or its own test split) are
        not paired."""
        tables = [self._read(self.run(stage, seed) / predictions_file("test"), pd.read_csv)
                  for stage in (first, second)]
        return all(tables[0][column].equals(tables[1][column]) for column in ("ref", "label"))

    def uncalibrated(self, stage: str, seed: int, split: str = "test") -> np.ndarray | None:
        """The run's raw softmax probabilities (before its temperature); None for runs from before calibration."""
        table = self._read(self.run(stage, seed) / predictions_file(split), pd.read_csv)
        columns = [f"uncalibrated_p_{name}" for name in self.classes]
        return table[columns].to_numpy() if set(columns) <= set(table.columns) else None

    def curves(self, stage: str, seed: int) -> pd.DataFrame:
        """The run's per-epoch table (train loss, validation loss and metrics, seconds)."""
        return self._read(self.run(stage, seed) / METRICS, pd.read_csv)

    def _read(self, path: Path, reader):
        if path not in self._cache:
            if not path.exists():
                raise ReportError(f"{path} is missing: re-run `medkd run` on this study to finish it")
            self._cache[path] = reader(path)
        return self._cache[path]


def label_fractions(recipe: Recipe) -> dict[str, dict[float, str]]:
    """Stages of a label-efficiency study: {method: {share of the train patients labelled: stage}}, for each
    method (model, transfer mode, starting weights) trained at two or more label fractions without a teacher."""
    methods: dict[str, dict[float, str]] = {}
    for stage in recipe.stages:
        if stage.pretrain is not None or stage.distill is not None:
            continue
        settings = recipe.stage_train(stage, 0)
        start = (f"from {stage.weights_from}" if stage.weights_from
                 else "random init" if settings.weights == "none" else f"weights {settings.weights}")
        fraction = recipe.stage_data(stage).split.train_fraction
        methods.setdefault(f"{settings.model} {settings.transfer.name}, {start}", {})[fraction] = stage.name
    return {method: stages for method, stages in methods.items() if len(stages) > 1}


def study_recipe(folder: str | Path) -> Recipe:
    """The recipe a study folder was run with (as `medkd run` wrote it)."""
    path = Path(folder) / RECIPE
    if not path.exists():
        raise ReportError(f"{path} not found: {folder} is not a study folder written by `medkd run`")
    return Recipe.model_validate(yaml.safe_load(path.read_text()))


def load_study(folder: str | Path) -> StudyResults:
    """Read a study folder written by `medkd run`, finished or not: the report shows the runs evaluated so far."""
    folder = Path(folder)
    recipe = study_recipe(folder)
    if recipe.data.split.folds is not None and recipe.data.split.fold is None:
        raise ReportError(f"{folder} is a cross-validated study: its folds are studies of their own "
                          f"({folder}/fold0, ...); report.cross_validation reads them together")
    runs, missing = finished_runs(recipe, folder)
    if runs.empty:
        raise ReportError(f"no run of the study in {folder} has been evaluated yet: run `medkd run` on it")
    summary = summarise(runs)
    first = runs.iloc[0]
    classes = Evaluation.read(run_folder(folder, first["stage"], int(first["seed"])), "test").classes
    data_check = json.loads((folder / DATA_CHECK).read_text()) if (folder / DATA_CHECK).exists() else None
    sessions = read_sessions(folder)
    return StudyResults(folder, recipe, runs, missing, summary,
                        recommend(summary, recipe.selection),
                        matched_controls(recipe), label_fractions(recipe), classes, data_check, sessions)
