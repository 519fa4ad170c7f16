"""Run a study: every stage for every seed, teachers first, finished stages skipped, then its tables and report."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection
from datetime import timedelta
from pathlib import Path

import pandas as pd

from medkd.config import Recipe, StageConfig
from medkd.data import DataConfig, PreparedData, check_data, prepare, record_data_location
from medkd.deploy import ExportError, export_run
from medkd.device import is_primary_process
from medkd.distillation import distill
from medkd.engine import fit
from medkd.evaluation import evaluate_run
from medkd.files import BACKBONE, DATA_LOCATION, write_json, write_text_atomically, write_yaml
from medkd.pretrain import pretrain
from medkd.study.folder import (DATA_CHECK, RECIPE, RUNS, SESSIONS, SUMMARY, finished_runs, is_evaluated,
                                is_exported, read_sessions, run_folder, session_record, starting_weights_file)
from medkd.study.plan import study_jobs
from medkd.study.summary import summarise

log = logging.getLogger(__name__)


def run_study(recipe: Recipe, out: str | Path, *, stages: Collection[str] | None = None,
              show_progress: bool = True) -> pd.DataFrame:
    """Train and evaluate every stage of `recipe` (or only `stages` and the stages they need) for each of its
    seeds into `out`; returns one row per finished (stage, seed) of the study.
    A stage whose evaluation exists is not run again: delete a run's folder to run it again.
    Writes the resolved recipe, the data check and a record of the session as it goes; at the end OUT/runs.csv
    (one row per run), OUT/summary.csv (mean and sd per stage) and the report (report.md, report.html)."""
    started = time.time()
    out = Path(out)
    jobs = study_jobs(recipe, stages)
    if not is_primary_process():  # the other processes of a distributed study train; rank 0 does the rest
        return train_jobs(recipe, out, jobs, show_progress=show_progress)
    out.mkdir(parents=True, exist_ok=True)
    write_yaml(out / RECIPE, recipe.model_dump(mode="json"))
    prepared = {}  # prepared data per distinct data section, shared by the evaluations of its stages

    def data_for(config: DataConfig) -> PreparedData:
        key = config.model_dump_json()
        if key not in prepared:
            prepared[key] = prepare(config, show_progress=show_progress)
        return prepared[key]

    if not (out / DATA_CHECK).exists():
        write_text_atomically(out / DATA_CHECK, json.dumps(check_data(data_for(recipe.data)).to_dict(), indent=2,
                                                           default=str))  # default=str: dates and paths
    jobs_run, earlier = 0, read_sessions(out)

    def record_session(ended: bool) -> None:  # at the start and after every run: a killed study keeps its record
        sessions = [*earlier, session_record(started, jobs_run, ended=ended)]
        write_json(out / SESSIONS, {"sessions": sessions})

    record_session(ended=False)
    for number, (seed, stage) in enumerate(jobs, 1):
        folder = run_folder(out, stage.name, seed)
        # Progress across runs as a log line, not a rich Progress around them: Lightning's progress bar clears
        # the console's live displays when it starts, and an enclosing display then fails when it stops.
        log.info("run %d of %d: %s seed %d (study time so far %s)", number, len(jobs), stage.name, seed,
                 timedelta(seconds=round(time.time() - started)))
        if not train_job(recipe, out, stage, seed, show_progress=show_progress):
            if is_evaluated(folder):
                if not (folder / DATA_LOCATION).exists():  # from before medkd recorded it
                    record_data_location(folder, recipe.stage_data(stage).path)
                export_job(recipe, folder, stage, data_for)  # a recipe that asks for exports after its runs
            continue
        if stage.pretrain is not None:
            jobs_run += 1
            record_session(ended=False)
            continue  # a backbone has no test scores: it shows through the stages that start from it
        data_config, settings = recipe.stage_data(stage), recipe.stage_train(stage, seed)
        jobs_run += 1
        data = data_for(data_config)
        evaluate_run(folder, "val", settings=recipe.evaluation.model_copy(update={"bootstrap_resamples": 0}),
                     data=data, accelerator=settings.runtime.accelerator, show_progress=False)
        evaluate_run(folder, "test", settings=recipe.evaluation, efficiency=True, data=data,
                     accelerator=settings.runtime.accelerator, show_progress=False)
        export_job(recipe, folder, stage, data_for)
        record_session(ended=False)
    table, _ = finished_runs(recipe, out)
    table.to_csv(out / RUNS, index=False)
    summarise(table).to_csv(out / SUMMARY)
    record_session(ended=True)
    from medkd.report import write_report  # the report reads the study's plan and folder: it sits above them

    write_report(out)
    return table


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
    settings = recipe.stage_train(stage, seed, stage.weights_from and starting_weights_file(out, stage.weights_from, seed))
    if stage.distill is None:
        fit(data_config, settings, folder, show_progress=show_progress)
    else:
        teachers = [str(run_folder(out, t, seed)) for t in stage.distill.teachers]
        distill(data_config, settings, recipe.stage_distill(stage, teachers), folder, show_progress=show_progress)
    return True


def export_job(recipe: Recipe, folder: Path, stage: StageConfig,
               data_for: Callable[[DataConfig], PreparedData]) -> None:
    """Export an evaluated run into RUN/export when the recipe's `export` covers its stage, once. An int8 model
    refused for its fall in test AUC is logged and the study goes on (export.json records the refusal)."""
    if recipe.export is None or not recipe.export.covers(stage) or is_exported(folder):
        return
    try:
        export_run(folder, recipe.export, data=data_for(recipe.stage_data(stage)), show_progress=False)
    except ExportError as err:
        log.warning("%s: %s", folder, err)


def train_jobs(recipe: Recipe, out: Path, jobs: list[tuple[int, StageConfig]], *, show_progress: bool) -> pd.DataFrame:
    """A process of a distributed study other than rank 0: its share of every training run, in the study's order
    (rank 0 evaluates and writes the tables; an empty table here)."""
    for seed, stage in jobs:
        train_job(recipe, out, stage, seed, show_progress=show_progress)
    return pd.DataFrame()
