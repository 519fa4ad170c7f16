"""A study's plan: which (seed, stage) runs, in what order (teachers before students), and each distilled
stage's matched no-KD control. Reads only the recipe."""

from __future__ import annotations

import logging
from collections.abc import Collection
from graphlib import CycleError, TopologicalSorter

from medkd.config import ConfigError, Recipe, StageConfig

log = logging.getLogger(__name__)


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
        teachers = stage.distill.teachers if stage.distill else []
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


def matched_controls(recipe: Recipe) -> dict[str, list[str]]:
    """Each distilled stage's controls, in this order: the matched no-KD control (the stage without a teacher whose
    training and data settings are the same: model, weights, transfer, epochs, optimiser, ...), then the
    label-smoothing control (the same, but trained on labels smoothed by loss.label_smoothing > 0: soft targets
    without a teacher). Students without any control are left out."""
    plain = [stage for stage in recipe.stages if stage.distill is None and stage.pretrain is None
             and stage.derive is None]
    controls = {}
    for student in (stage for stage in recipe.stages if stage.distill is not None):
        train, data = recipe.stage_train(student, 0), recipe.stage_data(student)
        found: list[str] = []
        for stage in plain:
            candidate = recipe.stage_train(stage, 0)
            if recipe.stage_data(stage) != data:
                continue
            smoothing = candidate.loss.label_smoothing
            if candidate == train:
                found.insert(0, stage.name)
            elif smoothing > 0 and smoothing != train.loss.label_smoothing and candidate.model_copy(
                    update={"loss": candidate.loss.model_copy(update={"label_smoothing": train.loss.label_smoothing})}
            ) == train:
                found.append(stage.name)
        if found:
            controls[student.name] = found
    return controls
