"""Recipes: presets, every shipped recipe valid, the runtime settings and their older spelling."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import tiny_recipe
from medkd.config import ConfigError, load_recipe
from medkd.device import RuntimeConfig
from medkd.engine import TrainConfig
from medkd.pretrain import PretrainConfig
from medkd.study import stage_order


def test_unknown_preset_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no preset 'fast'.*two_seeds"):
        load_recipe(tiny_recipe(tmp_path), preset="fast")


@pytest.mark.parametrize("recipe", sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_and_preset_is_valid(recipe):
    presets = yaml.safe_load(recipe.read_text()).get("presets", {})
    for preset in [None, *presets]:
        config = load_recipe(recipe, preset=preset)
        order = [stage.name for stage in stage_order(list(config.stages))]
        assert sorted(order) == sorted(stage.name for stage in config.stages)
        for stage in config.stages:  # every stage resolves (Recipe checks this when it is read)
            if stage.pretrain is None:
                assert config.stage_train(stage, 0).model


def test_runtime_settings_are_one_model_shared_by_train_and_pretrain(tmp_path):
    shared = set(RuntimeConfig.model_fields)
    assert shared == {"accelerator", "devices", "num_nodes", "precision", "channels_last", "num_workers", "threads",
                      "images_on_device", "tracking"}
    for settings in (TrainConfig, PretrainConfig):  # nested once, not copied beside the run's own settings
        assert not shared & set(settings.model_fields) and settings().runtime == RuntimeConfig()
    recipe = yaml.safe_load(tiny_recipe(tmp_path).read_text())
    recipe["train"]["runtime"] = {"accelerator": "cpu", "threads": 2}
    recipe["stages"][1]["train"]["runtime"] = {"threads": 1}
    path = tmp_path / "nested.yaml"
    path.write_text(yaml.safe_dump(recipe))
    config = load_recipe(path)
    teacher = next(stage for stage in config.stages if stage.name == "teacher")
    assert config.stage_train(teacher, 0).runtime == RuntimeConfig(accelerator="cpu", threads=1, precision="32")
    with pytest.raises(ConfigError, match=r"runtime\.thread"):
        load_recipe(path, {"train": {"runtime": {"thread": 4}}})  # a misspelt key is named, not ignored


def test_the_older_flat_spelling_of_runtime_settings_still_reads(tmp_path):
    """Recipes and run folders (config.yaml) written before `runtime` existed keep working."""
    older = {"model": "compact_cnn", "precision": "32", "threads": 2, "num_workers": 1, "accelerator": "cpu"}
    assert TrainConfig.model_validate(older).runtime == RuntimeConfig(precision="32", threads=2, num_workers=1,
                                                                      accelerator="cpu")
    assert PretrainConfig(channels_last=False).runtime.channels_last is False
    recipe = yaml.safe_load(tiny_recipe(tmp_path).read_text())  # its train section says precision: "32", flat
    recipe["stages"][1]["train"]["accelerator"] = "cpu"  # a stage's flat key wins over the recipe's runtime
    path = tmp_path / "older.yaml"
    path.write_text(yaml.safe_dump(recipe))
    config = load_recipe(path, {"train": {"runtime": {"accelerator": "auto"}}})
    teacher = next(stage for stage in config.stages if stage.name == "teacher")
    assert config.train.runtime.precision == "32" and config.stage_train(teacher, 0).runtime.accelerator == "cpu"


def test_one_spelling_of_each_key_and_a_stage_overrides_key_by_key():
    """`optimiser` is the one spelling (a misspelt key is named, not read); a stage's override wins over the
    recipe's section key by key."""
    recipe = load_recipe(None, {"data": {"path": "x"}, "train": {"optimiser": {"lr": 0.01, "weight_decay": 0.5}},
                                "stages": [{"name": "new", "train": {"optimiser": {"lr": 0.3}}}]})
    new = recipe.stage_train(recipe.stages[0], 0).optimiser
    assert (new.lr, new.weight_decay) == (0.3, 0.5)
    with pytest.raises(ConfigError, match=r"(?s)stages\.old\.train.*optimizer: unknown key"):
        load_recipe(None, {"data": {"path": "x"}, "stages": [{"name": "old", "train": {"optimizer": {"lr": 0.2}}}]})


def test_set_reaches_any_recipe_key_through_the_recipes_own_validation(tmp_path):
    """`--set dotted.key=value` (YAML values) merges into the recipe like its own keys; a wrong key or value is
    named as a recipe's would be, and a malformed pair says how to write it."""
    from typer.testing import CliRunner

    from medkd.cli import app
    from medkd.cli.common import dotted_overrides

    overrides = dotted_overrides(["train.transfer={name: lp-ft, probe: {epochs: 5}}", "train.epochs=3",
                                  "train.optimiser.lr=2e-4", "seeds=2"])
    recipe = load_recipe("recipes/pneumonia_lite.yaml", overrides)
    assert recipe.train.transfer.probe.epochs == 5 and recipe.train.epochs == 3 and recipe.seeds == 2
    assert recipe.train.optimiser.lr == 2e-4 and recipe.train.optimiser.backbone_lr_scale == 0.1  # key by key
    with pytest.raises(ConfigError, match=r"train\.transfer\.probe\.epoch: unknown key"):
        load_recipe("recipes/pneumonia_lite.yaml", dotted_overrides(["train.transfer.probe.epoch=5"]))
    with pytest.raises(ConfigError, match="write it as dotted.key=value"):
        dotted_overrides(["train.epochs"])
    result = CliRunner().invoke(app, ["run", "recipes/pneumonia_student.yaml", "--out", str(tmp_path / "s"),
                                      "--set", "seeds=many"])
    assert result.exit_code == 2 and "seeds" in result.output and "integer" in result.output
    assert not (tmp_path / "s").exists()
