"""Recipes: YAML files validated against the packages' own settings models, with errors a person can act on."""

from medkd.config.recipe import ConfigError, Recipe, describe, load_recipe, merge
from medkd.config.stages import SelectionConfig, StageConfig, StudyExportConfig

__all__ = ["ConfigError", "Recipe", "SelectionConfig", "StageConfig", "StudyExportConfig", "describe", "load_recipe", "merge"]
