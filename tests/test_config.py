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


def test_the_optimiser_section_keeps_reading_its_earlier_spelling():
    """`optimizer` (recipes and run folders' config.yaml from before one spelling) is read as `optimiser`; a stage's
    override in either spelling wins over the recipe's section, key by key."""
    recipe = load_recipe(None, {"data": {"path": "x"}, "train": {"optimiser": {"lr": 0.01, "weight_decay": 0.5}},
                                "stages": [{"name": "old", "train": {"optimizer": {"lr": 0.2}}},
                                           {"name": "new", "train": {"optimiser": {"lr": 0.3}}}]})
    old, new = (recipe.stage_train(stage, 0).optimiser for stage in recipe.stages)
    assert (old.lr, old.weight_decay, new.lr, new.weight_decay) == (0.2, 0.5, 0.3, 0.5)
    assert "optimiser" in recipe.train.model_dump() and "optimizer" not in recipe.train.model_dump()
