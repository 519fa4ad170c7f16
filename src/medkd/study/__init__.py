"""Studies: every stage of a recipe for several seeds, teachers first, finished stages skipped, one table.

Public API:
- the plan (reads the recipe): stage_order, study_jobs, with_dependencies, with_weights, matched_controls;
- the study folder (reads and names its files): run_folder, is_evaluated, finished_runs, result_row,
  per_class_recall_column, read_sessions, RUNS, SUMMARY, RECIPE, DATA_CHECK, SESSIONS;
- running it: run_study; its comparison: summarise, recommend (within_budget), print_summary.
"""

import lazy_loader

# Submodules load on first use: `import medkd.study` costs nothing until a name is used
# (the public API and its types are in __init__.pyi).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
