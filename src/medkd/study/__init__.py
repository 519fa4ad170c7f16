"""Studies: every stage of a recipe for several seeds, teachers first, finished stages skipped, one table.

Public API:
- the plan (reads the recipe): stage_order, study_jobs, with_dependencies, with_weights, matched_controls;
- the study folder (reads and names its files): run_folder, is_evaluated, finished_runs, result_row,
  per_class_recall_column, read_sessions, RUNS, SUMMARY, RECIPE, DATA_CHECK, SESSIONS;
- running it: run_study; its comparison: summarise, recommend (within_budget), print_summary.
"""

from medkd.study.folder import (DATA_CHECK, RECIPE, RUNS, SESSIONS, SUMMARY, finished_runs, is_evaluated,
                                per_class_recall_column, read_sessions, result_row, run_folder)
from medkd.study.plan import matched_controls, stage_order, study_jobs, with_dependencies, with_weights
from medkd.study.runner import run_study
from medkd.study.summary import Recommendation, print_summary, recommend, summarise, within_budget

__all__ = ["Recommendation", "DATA_CHECK", "RECIPE", "RUNS", "SESSIONS", "SUMMARY", "finished_runs", "is_evaluated", "matched_controls",
           "per_class_recall_column", "print_summary", "read_sessions", "recommend", "result_row", "run_folder",
           "run_study", "stage_order", "study_jobs", "summarise", "with_dependencies", "with_weights", "within_budget"]
