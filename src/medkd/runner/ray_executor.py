"""A study's runs as Ray tasks (`medkd run --executor ray`; the extra medkd[ray]): many runs at once, on one
machine's cores or GPUs or on a cluster, in dependency order (a student starts when its teachers of the same seed
are done). Workers train, each into its own run folder on storage every worker sees; the driver evaluates,
exports, and writes the same tables and report as the sequential executor. A run that fails is reported with its
error and blocks only the runs that need it; finished runs are skipped, so a killed driver resumes."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from medkd.config import ConfigError, Recipe
from medkd.files import STUDY_SESSIONS
from medkd.study import study_jobs
from medkd.tracking import Study, study_tracking, within_study

log = logging.getLogger(__name__)
TRAINED, FINISHED_BEFORE, FAILED, BLOCKED = "trained", "finished before", "failed", "blocked"


@dataclass(frozen=True)
class Outcome:
    """What became of one (stage, seed) on its worker."""

    stage: str
    seed: int
    status: str  # TRAINED, FINISHED_BEFORE, FAILED or BLOCKED (a run it needs failed or was blocked)
    started: float  # time.time() on the worker
    ended: float
    error: str | None = None  # the exception, for FAILED; the runs it waited for, for BLOCKED
    node: str | None = None  # the worker's node (Ray's node id)


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'medkd[ray]'") from None
    return ray


def train_remote(recipe_dump: dict, out: str, stage_name: str, seed: int, study: Study | None, threads: int | None,
                 *needed: Outcome) -> Outcome:
    """A worker's task: train one (stage, seed) unless a run it needs did not finish; never raises (the driver
    reports the error and goes on with the other runs)."""
    import ray

    from medkd.runner.study import train_job

    started, node = time.time(), ray.get_runtime_context().get_node_id()
    missing = [f"{o.stage} seed {o.seed}" for o in needed if o.status in (FAILED, BLOCKED)]
    if missing:
        return Outcome(stage_name, seed, BLOCKED, started, time.time(), f"needs {', '.join(missing)}", node)
    if threads:
        import torch

        torch.set_num_threads(threads)
    recipe = Recipe.model_validate(recipe_dump)
    stage = next(stage for stage in recipe.stages if stage.name == stage_name)
    try:
        with within_study(study):
            trained = train_job(recipe, Path(out), stage, seed, show_progress=False)
    except Exception as err:  # noqa: BLE001  (any failure of a run is reported, the study goes on)
        message = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=6)}"
        return Outcome(stage_name, seed, FAILED, started, time.time(), message, node)
    return Outcome(stage_name, seed, TRAINED if trained else FINISHED_BEFORE, started, time.time(), None, node)


@dataclass(frozen=True)
class RayExecutor:
    """Where a study's runs go: the cluster at `address` (None: a local Ray on this machine's cores and GPUs),
    each run a task of `cpus_per_run` CPUs (its torch threads on a CPU) and `gpus_per_run` GPUs."""

    address: str | None = None
    cpus_per_run: float = 1
    gpus_per_run: float = 0


def run_study_on_ray(recipe: Recipe, out: Path, executor: RayExecutor, *, stages: Collection[str] | None = None,
                     show_progress: bool = True) -> pd.DataFrame:
    """`run_study` with every (stage, seed) a Ray task (see RayExecutor). Returns the study's runs."""
    from medkd.runner.study import StudySession, finish_job, study_parameters

    ray = import_ray()
    cpus_per_run, gpus_per_run = executor.cpus_per_run, executor.gpus_per_run
    if not ray.is_initialized():
        ray.init(address=executor.address, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
    session = StudySession.open(recipe, out, show_progress=show_progress)
    jobs = study_jobs(recipe, stages)
    task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)(train_remote)
    threads = max(1, int(cpus_per_run)) if gpus_per_run == 0 else None
    by_stage = {stage.name: stage for _, stage in jobs}
    with study_tracking(recipe.train.runtime.tracking, out, recipe.name, study_parameters(recipe)) as study:
        refs: dict[tuple[int, str], object] = {}
        for seed, stage in jobs:  # teachers before students: a student's task takes its teachers' outcomes
            needed = [refs[(seed, name)] for name in sorted(stage.needs) if (seed, name) in refs]
            refs[(seed, stage.name)] = task.remote(recipe.model_dump(mode="json"), str(out), stage.name, seed,
                                                   study, threads, *needed)
        pending = {ref: key for key, ref in refs.items()}
        log.info("%d runs submitted to Ray (%s CPU, %s GPU each)", len(pending), cpus_per_run, gpus_per_run)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            pending.pop(done[0])
            outcome: Outcome = ray.get(done[0])
            session.outcomes.append(asdict(outcome))
            session.record(ended=False)
            if outcome.status in (FAILED, BLOCKED):
                log.error("%s seed %d %s: %s", outcome.stage, outcome.seed, outcome.status,
                          (outcome.error or "").splitlines()[0])
                continue
            log.info("%s seed %d %s in %.0f s (%d left)", outcome.stage, outcome.seed, outcome.status,
                     outcome.ended - outcome.started, len(pending))
            finish_job(session, by_stage[outcome.stage], outcome.seed, trained=outcome.status == TRAINED)
    stopped = [o for o in session.outcomes if o["status"] in (FAILED, BLOCKED)]
    if stopped:
        log.error("%d of %d runs did not finish (%s): their errors are in %s; the report covers the others",
                  len(stopped), len(session.outcomes), ", ".join(f"{o['stage']} seed {o['seed']} {o['status']}"
                                                                  for o in stopped), out / STUDY_SESSIONS)
    return session.close()
