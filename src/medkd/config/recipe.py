"""The recipe schema and its loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from medkd.config.stages import SelectionConfig, StageConfig, StudyExportConfig
from medkd.data import DataConfig
from medkd.distillation import DistillConfig
from medkd.engine import TrainConfig
from medkd.errors import MedkdError
from medkd.evaluation import EvaluationConfig
from medkd.pretrain import PretrainConfig
from medkd.settings import StrictModel


class ConfigError(MedkdError):
    """A recipe or option that is not valid; the message names the key and what is allowed."""


class Recipe(StrictModel):
    """A study: the data it runs on, how to train (defaults of every stage), and the stages `medkd run` trains.
    `medkd train`/`distill`/`pretrain` use data, train, distill and pretrain; `presets` are named overrides of the
    whole recipe."""

    name: str = "study"
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    distill: DistillConfig | None = None
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig, description="medkd pretrain's settings")
    stages: list[StageConfig] = Field(default_factory=list)
    seeds: int = Field(1, ge=1, description="each stage runs with seeds 0..seeds-1")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    export: StudyExportConfig | None = Field(None, description="export runs after their evaluation (medkd run), "
                                                               "e.g. the students in int8 with their CPU latency")
    presets: dict[str, dict] = Field(default_factory=dict, description="named overrides, chosen with --preset")
    comparisons: list[tuple[str, str]] = Field(
        default_factory=list, description="pairs of stages [a, b] the report tests against each other per seed "
                                          "(DeLong, McNemar), beside the matched controls it finds itself, e.g. two "
                                          "KD losses on the same teachers")

    @model_validator(mode="after")
    def _distillation_trains_the_whole_student(self) -> Recipe:
        from medkd.engine import transfer_mode_class

        if self.distill is not None and not transfer_mode_class(self.train.transfer.name).trains_backbone:
            raise ValueError(f"distillation trains the whole student: train.transfer {self.train.transfer.name} "
                             "trains the head alone (use scratch or finetune)")
        return self

    @model_validator(mode="after")
    def _derived_stages_see_their_sources_data(self) -> Recipe:
        """A derived run is scored on the data its source run was trained on."""
        by_name = {stage.name: stage for stage in self.stages}
        for stage in self.stages:
            source = by_name.get(stage.weights_from or "")
            if stage.derive is not None and source is not None and self.stage_data(stage) != self.stage_data(source):
                raise ValueError(f"stages.{stage.name}: a derived stage has its source stage's data; give it "
                                 f"{source.name}'s data section")
        return self

    @model_validator(mode="after")
    def _exported_stages_exist(self) -> Recipe:
        unknown = sorted(set(self.export.stages or []) - {stage.name for stage in self.stages}) if self.export else []
        if unknown:
            raise ValueError(f"export.stages: {unknown} are not stages of this recipe "
                             f"(its stages: {[stage.name for stage in self.stages]})")
        return self

    @model_validator(mode="after")
    def _compared_stages_exist(self) -> Recipe:
        names = {stage.name for stage in self.stages}
        unknown = sorted({name for pair in self.comparisons for name in pair} - names)
        if unknown:
            raise ValueError(f"comparisons: {unknown} are not stages of this recipe (its stages: {sorted(names)})")
        return self

    @model_validator(mode="after")
    def _every_stage_resolves(self) -> Recipe:
        """A stage's keys are checked when the recipe is read, not when its turn comes in a long study."""
        for stage in self.stages:
            self.stage_data(stage)
            if stage.derive is not None:
                continue
            if stage.pretrain is not None:
                self.stage_pretrain(stage, seed=0)
            else:
                self.stage_train(stage, seed=0)
                self.stage_distill(stage)
        return self

    def stage_train(self, stage: StageConfig, seed: int, weights_file: str | Path | None = None) -> TrainConfig:
        """The stage's training settings for `seed`: the recipe's `train` with the stage's keys changed. A stage
        with `weights_from` starts from `weights_file` (that stage's result in a study folder); without it, the
        weights read 'stage:NAME', which stands for the file when settings are compared."""
        overrides = {**stage.train, "seed": seed}
        if stage.weights_from:
            overrides["weights"] = str(weights_file) if weights_file is not None else f"stage:{stage.weights_from}"
        return _resolved(TrainConfig, self.train.model_dump(), overrides, f"stages.{stage.name}.train")

    def stage_data(self, stage: StageConfig) -> DataConfig:
        """The stage's data settings: the recipe's `data` with the stage's keys changed."""
        return _resolved(DataConfig, self.data.model_dump(), stage.data, f"stages.{stage.name}.data")

    def stage_pretrain(self, stage: StageConfig, seed: int) -> PretrainConfig:
        """A pretraining stage's settings for `seed`: the recipe's `pretrain` with the stage's keys changed."""
        return _resolved(PretrainConfig, self.pretrain.model_dump(), {**(stage.pretrain or {}), "seed": seed},
                         f"stages.{stage.name}.pretrain")

    def stage_distill(self, stage: StageConfig, teacher_folders: list[str] | None = None) -> DistillConfig | None:
        """A student stage's distillation settings (None for other stages); the teachers are stage names, or
        `teacher_folders` (their run folders in a study) when given."""
        if stage.distill is None or teacher_folders is None:
            return stage.distill
        return stage.distill.model_copy(update={"teachers": list(teacher_folders)})


def _resolved(model: type[BaseModel], base: dict, overrides: dict, where: str):
    """`model` validated from `base` deep-merged with `overrides`; an error names the key path `where`."""
    try:
        return model.model_validate(merge(base, overrides))
    except ValidationError as err:
        raise ConfigError(f"{where}: invalid settings\n" + describe(err)) from None


def merge(base: dict, overrides: dict) -> dict:
    """Deep-merge `overrides` into a copy of `base`; None in `overrides` means 'not given' and is dropped."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict):
            current = merged.get(key)
            value = merge(current if isinstance(current, dict) else {}, value)
            if value:
                merged[key] = value
        elif value is not None:
            merged[key] = value
    return merged


def load_recipe(path: str | Path | None, overrides: dict[str, Any] | None = None, preset: str | None = None) -> Recipe:
    """Read and validate a recipe file (or only `overrides` when `path` is None); a `preset` of the recipe is
    applied first, then the overrides."""
    raw, where = read_recipe(path, overrides, preset)
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{where}: invalid settings\n" + describe(err, stage_names(raw))) from None
    except ConfigError as err:  # a stage's settings (see Recipe._every_stage_resolves)
        raise ConfigError(f"{where}: {err}") from None


def load_data_settings(path: str | Path | None, overrides: dict[str, Any] | None = None) -> DataConfig:
    """The data section of a recipe (or of `overrides` alone), validated on its own: `medkd data check` needs
    neither the models' registry nor a training section."""
    raw, where = read_recipe(path, overrides)
    if "data" not in raw:
        raise ConfigError(f"{where}: no data section (give --data or a recipe with one)")
    try:
        return DataConfig.model_validate(raw["data"])
    except ValidationError as err:
        raise ConfigError(f"{where}: invalid settings\n" + describe(err, prefix="data")) from None


def read_recipe(path: str | Path | None, overrides: dict[str, Any] | None = None,
                preset: str | None = None) -> tuple[dict, str]:
    """A recipe file's mapping with `preset` and then `overrides` merged in, and where it came from (for errors)."""
    raw: dict = {}
    where = "command-line options"
    if path is not None:
        where = str(path)
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"recipe file {path} not found") from None
        except IsADirectoryError:
            raise ConfigError(f"{path} is a folder, not a recipe: pass data with --data {path}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a recipe is a mapping of keys (name, data, ...), not a {type(raw).__name__}")
    if preset is not None:
        presets = raw.get("presets") or {}
        if preset not in presets:
            raise ConfigError(f"{where}: no preset {preset!r}; this recipe has: {', '.join(presets) or 'none'}")
        raw = merge(raw, presets[preset])
    return merge(raw, overrides or {}), where


def stage_names(raw: dict) -> list[str | None]:
    """The names of a raw recipe's stages, by position (None where a stage has none)."""
    given = raw.get("stages")
    stages = given if isinstance(given, list) else []
    return [stage.get("name") if isinstance(stage, dict) else None for stage in stages]


def describe(err: ValidationError, stages: list[str | None] | None = None, prefix: str | None = None) -> str:
    """One line per problem: the dotted key (a stage by its name, when `stages` gives the names; under `prefix`,
    the section validated), what is wrong, and the value given."""
    lines = []
    for problem in err.errors():
        loc = ([prefix] if prefix else []) + list(problem["loc"])
        if stages and len(loc) > 1 and loc[0] == "stages" and isinstance(loc[1], int) and loc[1] < len(stages):
            loc[1] = stages[loc[1]] or loc[1]
        key = ".".join(str(part) for part in loc) or "(top level)"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and level)"
        # a whole section's check (e.g. model, weights and model_args together) names its keys in the message
        shown = problem["type"] not in ("missing", "extra_forbidden") and not isinstance(problem.get("input"), dict)
        given = f" (got {problem.get('input')!r})" if shown else ""
        lines.append(f"  - {key}: {message}{given}")
    return "\n".join(lines)
