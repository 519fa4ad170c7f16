"""Run a study: every stage for every seed, teachers first, finished stages skipped, then its tables and report.

run_study reads as its steps: open the session (recipe, data check, session record), run each job (train,
evaluate, export), close (tables, session end, report)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pandas as pd

from medkd.config import Recipe, StageConfig
from medkd.data import DataConfig, PreparedData, check_data, prepare, record_data_location, run_data_config
from medkd.deploy import ExportError, export_run, score_exported
from medkd.derive import DeriveInputs, derive_run
from medkd.device import is_primary_process
from medkd.distillation import distill
from medkd.engine import fit
from medkd.evaluation import evaluate_run
from medkd.files import (
    BACKBONE,
    DATA_CHECK,
    DATA_LOCATION,
    EXPORT,
    EXPORT_TEST_SCORES,
    RECIPE,
    REPORT_HTML,
    REPORT_MARKDOWN,
    RUNS,
    STUDY_SESSIONS,
    SUMMARY,
    write_json,
    write_text_atomically,
    write_yaml,
)
from medkd.pretrain import pretrain
from medkd.report import cross_validation, fold_folder, write_cross_validation_report, write_report
from medkd.runner.ray_executor import RayExecutor, run_study_on_ray
from medkd.study import (
    finished_runs,
    is_evaluated,
    is_exported,
    read_sessions,
    run_folder,
    session_record,
    starting_weights_file,
    study_jobs,
    summarise,
)
from medkd.tracking import log_study_results, study_tracking

log = logging.getLogger(__name__)


def run_study(recipe: Recipe, out: str | Path, *, stages: Collection[str] | None = None,
              show_progress: bool = True, executor: RayExecutor | None = None) -> pd.DataFrame:
    """Train and evaluate every stage of `recipe` (or only `stages` and the stages they need) for each of its
    seeds into `out`; returns one row per finished (stage, seed) of the study.
    A stage whose evaluation exists is not run again: delete a run's folder to run it again.
    Writes the resolved recipe, the data check and a record of the session as it goes; at the end OUT/runs.csv
    (one row per run), OUT/summary.csv (mean and sd per stage) and the report (report.md, report.html).
    `executor`: the runs as Ray tasks (runner.ray_executor), else one after another here."""
    out = Path(out)
    split = recipe.data.split
    if split.folds is not None and split.fold is None:
        return run_cross_validation(recipe, out, stages=stages, show_progress=show_progress, executor=executor)
    if executor is not None:
        return run_study_on_ray(recipe, out, executor, stages=stages, show_progress=show_progress)
    jobs = study_jobs(recipe, stages)
    if not is_primary_process():  # the other processes of a distributed study train; rank 0 does the rest
        return train_jobs(recipe, out, jobs, show_progress=show_progress)
    session = StudySession.open(recipe, out, show_progress=show_progress)
    with study_tracking(recipe.train.runtime.tracking, out, recipe.name, study_parameters(recipe)):
        for number, (seed, stage) in enumerate(jobs, 1):
            # Progress across runs as a log line, not a rich Progress around them: Lightning's progress bar clears
            # the console's live displays when it starts, and an enclosing display then fails when it stops.
            log.info("run %d of %d: %s seed %d (study time so far %s)", number, len(jobs), stage.name, seed,
                     timedelta(seconds=round(time.time() - session.started)))
            run_job(session, stage, seed)
    return session.close()


def study_parameters(recipe: Recipe) -> dict:
    """What a tracked study's parent run shows as its parameters."""
    return {"recipe": recipe.name, "seeds": recipe.seeds, "stages": [stage.name for stage in recipe.stages],
            "data": recipe.data.path, "fold": recipe.data.split.fold, "folds": recipe.data.split.folds}


def run_cross_validation(recipe: Recipe, out: Path, *, stages: Collection[str] | None = None,
                         show_progress: bool = True, executor: RayExecutor | None = None) -> pd.DataFrame:
    """Every fold of `recipe.data.split.folds` as a study of its own in OUT/fold{k} (resumable as any study),
    then the view across them (report.write_cross_validation_report); returns every fold's runs with a fold
    column."""
    folds = recipe.data.split.folds
    assert folds is not None  # run_study calls this for a recipe with folds
    for fold in range(folds):
        log.info("cross-validation: fold %d of %d", fold, folds)
        run_study(with_fold(recipe, fold), fold_folder(out, fold), stages=stages, show_progress=show_progress,
                  executor=executor)
    if not is_primary_process():
        return pd.DataFrame()
    write_yaml(out / RECIPE, recipe.model_dump(mode="json"))
    result = cross_validation(out, folds)
    write_cross_validation_report(out, folds, result)
    return result.runs


def with_fold(recipe: Recipe, fold: int) -> Recipe:
    """`recipe` with data.split.fold set (and so every stage's data, which derives from it)."""
    data = recipe.data.model_copy(update={"split": recipe.data.split.model_copy(update={"fold": fold})})
    return Recipe.model_validate({**recipe.model_dump(mode="json"), "data": data.model_dump(mode="json")})


@dataclass
class StudySession:
    """One invocation of a study on its folder: the data prepared so far (shared by the evaluations of stages with
    the same data section) and the record of the session (OUT/study.json, rewritten after every run so that a
    killed study keeps it)."""

    recipe: Recipe
    out: Path
    show_progress: bool
    started: float = field(default_factory=time.time)
    earlier: list[dict] = field(default_factory=list)
    jobs_run: int = 0
    prepared: dict[str, PreparedData] = field(default_factory=dict)
    outcomes: list[dict] = field(default_factory=list)  # the Ray executor's: each run's status, times and error

    @classmethod
    def open(cls, recipe: Recipe, out: Path, *, show_progress: bool) -> StudySession:
        """Start a session: the resolved recipe, the data check (once per study folder), the session record."""
        out.mkdir(parents=True, exist_ok=True)
        write_yaml(out / RECIPE, recipe.model_dump(mode="json"))
        session = cls(recipe, out, show_progress, earlier=read_sessions(out))
        if not (out / DATA_CHECK).exists():
            report = check_data(session.data_for(recipe.data)).to_dict()
            write_text_atomically(out / DATA_CHECK, json.dumps(report, indent=2, default=str))  # dates, paths
        session.record(ended=False)
        return session

    def data_for(self, config: DataConfig) -> PreparedData:
        """The prepared data of a data section, prepared once per session."""
        key = config.model_dump_json()
        if key not in self.prepared:
            self.prepared[key] = prepare(config, show_progress=self.show_progress)
        return self.prepared[key]

    def record(self, *, ended: bool) -> None:
        current = session_record(self.started, self.jobs_run, ended=ended)
        if self.outcomes:
            current["runs"] = self.outcomes
        sessions = [*self.earlier, current]
        write_json(self.out / STUDY_SESSIONS, {"sessions": sessions})

    def close(self) -> pd.DataFrame:
        """The study's tables (runs.csv, summary.csv), the session's end and the report; returns the runs."""
        table, _ = finished_runs(self.recipe, self.out)
        table.to_csv(self.out / RUNS, index=False)
        summarise(table).to_csv(self.out / SUMMARY)
        self.record(ended=True)
        write_report(self.out)
        log_study_results(self.out, [self.out / name for name in (RUNS, SUMMARY, REPORT_HTML, REPORT_MARKDOWN)])
        return table


def run_job(session: StudySession, stage: StageConfig, seed: int) -> None:
    """One (stage, seed): trained and evaluated on val and test, exported when the recipe asks; a run finished
    before is only brought up to date (its data location, its export)."""
    finish_job(session, stage, seed, trained=train_job(session.recipe, session.out, stage, seed,
                                                       show_progress=session.show_progress))


def finish_job(session: StudySession, stage: StageConfig, seed: int, *, trained: bool) -> None:
    """After a (stage, seed) was trained (`trained`) or found finished before: evaluated on val and test and
    exported as the recipe asks, or, finished before, brought up to date (its data location, its export)."""
    recipe, folder = session.recipe, run_folder(session.out, stage.name, seed)
    if not trained:
        if is_evaluated(folder):
            if not (folder / DATA_LOCATION).exists():  # from before medkd recorded it
                record_data_location(folder, recipe.stage_data(stage).path)
            export_job(recipe, folder, stage, session.data_for)  # a recipe that asks for exports after its runs
        return
    session.jobs_run += 1
    if stage.pretrain is None:  # a backbone has no test scores: it shows through the stages that start from it
        evaluate_job(recipe, folder, stage, seed, session.data_for(recipe.stage_data(stage)))
        export_job(recipe, folder, stage, session.data_for)
    session.record(ended=False)


def evaluate_job(recipe: Recipe, folder: Path, stage: StageConfig, seed: int, data: PreparedData) -> None:
    """A trained run scored on val (no intervals: validation chooses, it is not reported) and on test (with
    intervals and its CPU cost)."""
    accelerator = recipe.stage_train(stage, seed).runtime.accelerator
    evaluate_run(folder, "val", settings=recipe.evaluation.model_copy(update={"bootstrap_resamples": 0}),
                 data=data, accelerator=accelerator, show_progress=False)
    evaluate_run(folder, "test", settings=recipe.evaluation, efficiency=True, data=data, accelerator=accelerator,
                 show_progress=False)


def train_job(recipe: Recipe, out: Path, stage: StageConfig, seed: int, *, show_progress: bool) -> bool:
    """Train (or pretrain) one (stage, seed) of the study into its run folder; False when finished before."""
    folder, data_config = run_folder(out, stage.name, seed), recipe.stage_data(stage)
    if stage.pretrain is not None:
        if (folder / BACKBONE).exists():
            return False
        pretrain(data_config, recipe.stage_pretrain(stage, seed), folder, show_progress=show_progress)
        return True
    if is_evaluated(folder):
        log.info("%s seed %d: finished before, skipped", stage.name, seed)
        return False
    if stage.derive is not None:
        assert stage.weights_from is not None  # StageConfig: a derived stage names its source
        source = run_folder(out, stage.weights_from, seed)
        derive_run(source, folder, stage.derive,
                   DeriveInputs(lambda: prepare(run_data_config(source), show_progress=show_progress)))
        return True
    settings = recipe.stage_train(stage, seed,
                                  stage.weights_from and starting_weights_file(out, stage.weights_from, seed))
    if stage.distill is None:
        fit(data_config, settings, folder, show_progress=show_progress)
    else:
        teachers = [str(run_folder(out, t, seed)) for t in stage.distill.teachers]
        distillation = recipe.stage_distill(stage, teachers)
        assert distillation is not None  # stage.distill is set
        distill(data_config, settings, distillation, folder, show_progress=show_progress)
    return True


def export_job(recipe: Recipe, folder: Path, stage: StageConfig,
               data_for: Callable[[DataConfig], PreparedData]) -> None:
    """Export an evaluated run into RUN/export when the recipe's `export` covers its stage, once, then score the
    exported engines on test for the report (RUN/export/test_scores.json; the export itself reads validation
    only). An int8 model refused for its fall in validation AUC is logged and the study goes on (export.json
    records the refusal)."""
    scored = folder / EXPORT / EXPORT_TEST_SCORES
    if recipe.export is None or not recipe.export.covers(stage) or scored.exists():
        return
    data = data_for(recipe.stage_data(stage))
    if not is_exported(folder):
        try:
            export_run(folder, recipe.export, data=data, show_progress=False)
        except ExportError as err:
            log.warning("%s: %s", folder, err)
    write_json(scored, score_exported(folder / EXPORT, data, "test"))


def train_jobs(recipe: Recipe, out: Path, jobs: list[tuple[int, StageConfig]], *, show_progress: bool) -> pd.DataFrame:
    """A process of a distributed study other than rank 0: its share of every training run, in the study's order
    (rank 0 evaluates and writes the tables; an empty table here)."""
    for seed, stage in jobs:
        train_job(recipe, out, stage, seed, show_progress=show_progress)
    return pd.DataFrame()
