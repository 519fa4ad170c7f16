"""Running a study: a recipe's stages for every seed, in dependency order, resumable, then its tables and report.

This layer sits above every package it calls (study's plan and folder, training, evaluation, export, report), so
no package below imports it. Public API: run_study.
"""

import lazy_loader

# Submodules load on first use: `import medkd.runner` costs nothing until a name is used
# (the public API and its types are in __init__.pyi).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
