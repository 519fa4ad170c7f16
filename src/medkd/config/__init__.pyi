# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .recipe import ConfigError as ConfigError
from .recipe import Recipe as Recipe
from .recipe import describe as describe
from .recipe import load_data_settings as load_data_settings
from .recipe import load_recipe as load_recipe
from .recipe import merge as merge
from .recipe import read_recipe as read_recipe
from .stages import SelectionConfig as SelectionConfig
from .stages import StageConfig as StageConfig
from .stages import StudyExportConfig as StudyExportConfig

__all__ = [
    "ConfigError",
    "Recipe",
    "SelectionConfig",
    "StageConfig",
    "StudyExportConfig",
    "describe",
    "load_data_settings",
    "load_recipe",
    "read_recipe",
    "merge",
]
