# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .recipe import ConfigError as ConfigError, Recipe as Recipe, describe as describe, load_data_settings as load_data_settings, load_recipe as load_recipe, read_recipe as read_recipe, merge as merge
from .stages import SelectionConfig as SelectionConfig, StageConfig as StageConfig, StudyExportConfig as StudyExportConfig

__all__ = ["ConfigError", "Recipe", "SelectionConfig", "StageConfig", "StudyExportConfig", "describe", "load_data_settings", "load_recipe", "read_recipe", "merge"]
