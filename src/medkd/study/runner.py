"""Run a study: every stage for every seed, teachers before students, finished stages skipped, one table."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Collection
from datetime import datetime, timedelta, timezone
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pandas as pd
import yaml

from medkd.config.recipe import ConfigError, Recipe, merge
from medkd.config.stages import StageConfig
from medkd.data import DataConfig, PreparedData, check_data, prepare
from medkd.data.location import LOCATION_FILE, record_data_location
from medkd.distillation import DistillConfig, distill
from medkd.engine import TrainConfig, fit
from medkd.evaluation import SCALARS, evaluate_run
from medkd.evaluation.evaluate import RESULTS
from medkd.files import write_text_atomically
from medkd.models.run_folder import BEST
from medkd.pretrain import BACKBONE, PretrainConfig, pretrain
from medkd.environment import describe_environment

log = logging.getLogger(__name__)
RUNS, RECIPE, DATA_CHECK, SESSIONS = "runs.csv", "recipe.yaml", "data_check.json", "study.json"


def stage_order(stages: list[StageConfig]) -> list[StageConfig]:
    """Stages sorted so that every teacher comes before its students."""
    by_name = {stage.name: stage for stage in stages}
    if len(by_name) != len(stages):
        raise ConfigError("stages: two stages have the same name")
    graph = {}
    for stage in stages:
        unknown = sorted(stage.needs - by_name.keys())
        if unknown:
            raise ConfigError(f"stages.{stage.name}: teachers or weights_from {unknown} are not stages of this study "
                              f"(stages: {', '.join(by_name)})")
        teachers = (stage.distill or {}).get("teachers", [])
        pretraining = [t for t in teachers if by_name[t].pretrain is not None]
        if pretraining:
            raise ConfigError(f"stages.{stage.name}.distill.teachers: {pretraining} are pretraining stages, which "
                              "have no classifier to teach with; fine-tune one first (weights_from)")
        graph[stage.name] = stage.needs
    try:
        return [by_name[name] for name in TopologicalSorter(graph).static_order()]
    except CycleError as err:
        raise ConfigError(f"stages: teachers form a cycle: {err.args[1]}") from None


def with_weights(recipe: Recipe, weights: str) -> Recipe:
    """`recipe` with every stage starting from `weights` (e.g. none where ImageNet weights cannot be fetched)."""
    log.warning("weights %s for every stage, whatever the recipe says", weights)
    return recipe.model_copy(update={
        "train": recipe.train.model_copy(update={"weights": weights}),
        "stages": [stage.model_copy(update={"train": {**stage.train, "weights": weights}}) for stage in recipe.stages]})


def stage_settings(recipe: Recipe, stage: StageConfig, seed: int, out: Path | None = None) -> TrainConfig:
    """The stage's training settings for `seed`; with `out`, weights_from becomes the other stage's file."""
    overrides = {**stage.train, "seed": seed}
    if stage.weights_from and out is not None:
        source = run_folder(out, stage.weights_from, seed)
        overrides["weights"] = str(source / (BACKBONE if (source / BACKBONE).exists() else BEST))
    elif stage.weights_from:
        overrides["weights"] = f"stage:{stage.weights_from}"  # stands for the file, for comparing settings
    try:
        return TrainConfig.model_validate(merge(recipe.train.model_dump(), overrides))
    except ValueError as err:
        raise ConfigError(f"stages.{stage.name}.train: {err}") from None


def stage_data(recipe: Recipe, stage: StageConfig) -> DataConfig:
    try:
        return DataConfig.model_validate(merge(recipe.data.model_dump(), stage.data))
    except ValueError as err:
        raise ConfigError(f"stages.{stage.name}.data: {err}") from None


def stage_pretraining(recipe: Recipe, stage: StageConfig, seed: int) -> PretrainConfig:
    try:
        return PretrainConfig.model_validate(merge(recipe.pretrain.model_dump(), {**stage.pretrain, "seed": seed}))
    except ValueError as err:
        raise ConfigError(f"stages.{stage.name}.pretrain: {err}") from None


def with_dependencies(recipe: Recipe, names: Collection[str]) -> set[str]:
    """The stages `names` and every stage they need (teachers, weights_from), however indirectly."""
    by_name = {stage.name: stage for stage in recipe.stages}
    unknown = sorted(set(names) - by_name.keys())
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: not a stage of the study {recipe.name}; pick from "
                          f"{', '.join(by_name)}")
    wanted, pending = set(), list(names)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(by_name[name].needs)
    return wanted


def study_jobs(recipe: Recipe, stages: Collection[str] | None = None) -> list[tuple[int, StageConfig]]:
    """(seed, stage) in the order a study runs them: seed by seed, teachers before students; with `stages`,
    only those stages and the ones they need."""
    order = stage_order(list(recipe.stages))
    if stages is not None:
        wanted = with_dependencies(recipe, stages)
        order = [stage for stage in order if stage.name in wanted]
    return [(seed, stage) for seed in range(recipe.seeds) for stage in order]


def is_evaluated(folder: Path) -> bool:
    """Whether the run in `folder` is finished: trained and evaluated on val and test."""
    return (folder / RESULTS / "test.json").exists() and (folder / RESULTS / "val.json").exists()


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


def run_folder(out: Path, stage: str, seed: int) -> Path:
    return out / stage / f"seed{seed}"


def matched_controls(recipe: Recipe) -> dict[str, str]:
    """Each distilled stage's matched no-KD control: the stage without a teacher whose training settings are
    the same (model, weights, transfer, epochs, optimiser, ...); students without one are left out."""
    plain = [stage for stage in recipe.stages if stage.distill is None and stage.pretrain is None]
    controls = {}
    for student in (stage for stage in recipe.stages if stage.distill is not None):
        settings = (stage_settings(recipe, student, 0), stage_data(recipe, student))
        match = next((stage.name for stage in plain
                      if (stage_settings(recipe, stage, 0), stage_data(recipe, stage)) == settings), None)
        if match is not None:
            controls[student.name] = match
    return controls


def read_sessions(out: Path) -> list[dict]:
    """The record of every `medkd run` invocation on the study folder OUT (oldest first)."""
    path = out / SESSIONS
    return json.loads(path.read_text())["sessions"] if path.exists() else []


def session_record(started: float, jobs_run: int, *, ended: bool) -> dict:
    """This invocation: command, start, wall time so far, runs trained, whether it ended, and the machine."""
    return {"command": " ".join(sys.argv),
            "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
            "wall_seconds": round(time.time() - started, 1), "jobs_run": jobs_run, "ended": ended,
            "environment": describe_environment()}


def run_study(recipe: Recipe, out: str | Path, *, stages: Collection[str] | None = None,
              show_progress: bool = True) -> pd.DataFrame:
    """Train and evaluate every stage of `recipe` (or only `stages` and the stages they need) for each of its
    seeds into `out`; returns one row per finished (stage, seed) of the study and writes it to OUT/runs.csv.
    A stage whose evaluation exists is not run again: delete a run's folder to run it again.
    Also writes the resolved recipe, the data check and a record of the session, for the report."""
    started = time.time()
    out = Path(out)
    jobs = study_jobs(recipe, stages)
    out.mkdir(parents=True, exist_ok=True)
    (out / RECIPE).write_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    prepared = {}  # prepared data per distinct data section, shared by the evaluations of its stages

    def data_for(config: DataConfig) -> PreparedData:
        key = config.model_dump_json()
        if key not in prepared:
            prepared[key] = prepare(config, show_progress=show_progress)
        return prepared[key]

    if not (out / DATA_CHECK).exists():
        write_text_atomically(out / DATA_CHECK, json.dumps(check_data(data_for(recipe.data)).to_dict(), indent=2,
                                                           default=str))
    jobs_run, earlier = 0, read_sessions(out)

    def record_session(ended: bool) -> None:  # at the start and after every run: a killed study keeps its record
        sessions = [*earlier, session_record(started, jobs_run, ended=ended)]
        write_text_atomically(out / SESSIONS, json.dumps({"sessions": sessions}, indent=2))

    record_session(ended=False)
    for number, (seed, stage) in enumerate(jobs, 1):
        folder = run_folder(out, stage.name, seed)
        # Progress across runs as a log line, not a rich Progress around them: Lightning's progress bar clears
        # the console's live displays when it starts, and an enclosing display then fails when it stops.
        log.info("run %d of %d: %s seed %d (study time so far %s)", number, len(jobs), stage.name, seed,
                 timedelta(seconds=round(time.time() - started)))
        data_config = stage_data(recipe, stage)
        if stage.pretrain is not None:
            if not (folder / BACKBONE).exists():
                pretrain(data_config, stage_pretraining(recipe, stage, seed), folder, show_progress=show_progress)
                jobs_run += 1
                record_session(ended=False)
            continue  # a backbone has no test scores: it shows through the stages that start from it
        if is_evaluated(folder):
            log.info("%s seed %d: finished before, skipped", stage.name, seed)
            if not (folder / LOCATION_FILE).exists():  # finished before medkd recorded where a run's data is
                record_data_location(folder, data_config.path)
            continue
        settings = stage_settings(recipe, stage, seed, out)
        if stage.distill is None:
            fit(data_config, settings, folder, show_progress=show_progress)
        else:
            teachers = [str(run_folder(out, t, seed)) for t in stage.distill.get("teachers", [])]
            distillation = DistillConfig.model_validate({**stage.distill, "teachers": teachers})
            distill(data_config, settings, distillation, folder, show_progress=show_progress)
        jobs_run += 1
        data = data_for(data_config)
        evaluate_run(folder, "val", settings=recipe.evaluation.model_copy(update={"bootstrap_resamples": 0}),
                     data=data, accelerator=settings.accelerator, show_progress=False)
        evaluate_run(folder, "test", settings=recipe.evaluation, efficiency=True, data=data,
                     accelerator=settings.accelerator, show_progress=False)
        record_session(ended=False)
    table, _ = finished_runs(recipe, out)
    table.to_csv(out / RUNS, index=False)
    record_session(ended=True)
    return table


def result_row(folder: Path, stage: str, seed: int) -> dict:
    """One run's val and test scores (at its validation threshold) and its cost."""
    row = {"stage": stage, "seed": seed}
    for split in ("val", "test"):
        result = json.loads((folder / RESULTS / f"{split}.json").read_text())
        scores = result["at_threshold"] or result["at_argmax"]
        row.update({f"{split}_{name}": scores[name] for name in SCALARS})
        if split == "test":
            row.update({f"test_{name}@argmax": result["at_argmax"][name] for name in ("accuracy", "recall", "specificity")})
            cost = result["efficiency"]
            row.update(parameters=cost["parameters"], macs=cost["macs"], size_mb=cost["checkpoint_bytes"] / 1e6,
                       latency_ms=cost["latency_ms_median"], latency_p95_ms=cost["latency_ms_p95"],
                       throughput=cost["throughput_images_per_s"])
    row["train_seconds"] = float(pd.read_csv(folder / "metrics.csv")["seconds"].sum())
    return row
