# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .ray_executor import RayExecutor as RayExecutor
from .study import run_study as run_study

__all__ = ["RayExecutor", "run_study"]
