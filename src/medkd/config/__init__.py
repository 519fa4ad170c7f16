"""Recipes: YAML files validated against the packages' own settings models, with errors a person can act on."""

from medkd.config.recipe import ConfigError, Recipe, load_recipe, merge

__all__ = ["ConfigError", "Recipe", "load_recipe", "merge"]
