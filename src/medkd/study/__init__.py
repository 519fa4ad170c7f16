"""Studies: every stage of a recipe for several seeds, teachers first, finished stages skipped, one table.

Public API:
- the plan (reads the recipe): stage_order, study_jobs, with_dependencies, with_weights, matched_controls;
- the study folder: run_folder, is_evaluated, is_exported, finished_runs, result_row, read_sessions,
  session_record, starting_weights_file (its file names are medkd.files');
- its tables' columns: schema (ResultRow, score, mean, sd, ...);
- its comparison: summarise, recommend (within_budget), print_summary.
Running a study is medkd.runner's (run_study), a layer above this one and the report.
"""

import lazy_loader

# Submodules load on first use: `import medkd.study` costs nothing until a name is used
# (the public API and its types are in __init__.pyi).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
