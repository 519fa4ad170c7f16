# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .folder import DATA_CHECK as DATA_CHECK, RECIPE as RECIPE, RUNS as RUNS, SESSIONS as SESSIONS, SUMMARY as SUMMARY, finished_runs as finished_runs, is_evaluated as is_evaluated, per_class_recall_column as per_class_recall_column, read_sessions as read_sessions, result_row as result_row, run_folder as run_folder
from .plan import matched_controls as matched_controls, stage_order as stage_order, study_jobs as study_jobs, with_dependencies as with_dependencies, with_weights as with_weights
from .runner import run_study as run_study
from .summary import Recommendation as Recommendation, print_summary as print_summary, recommend as recommend, summarise as summarise, within_budget as within_budget

__all__ = ["DATA_CHECK", "RECIPE", "RUNS", "Recommendation", "SESSIONS", "SUMMARY", "finished_runs", "is_evaluated", "matched_controls", "per_class_recall_column", "print_summary", "read_sessions", "recommend", "result_row", "run_folder", "run_study", "stage_order", "study_jobs", "summarise", "with_dependencies", "with_weights", "within_budget"]
