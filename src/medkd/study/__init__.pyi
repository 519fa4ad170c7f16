# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from . import schema as schema
from .folder import finished_runs as finished_runs
from .folder import is_evaluated as is_evaluated
from .folder import is_exported as is_exported
from .folder import read_sessions as read_sessions
from .folder import result_row as result_row
from .folder import run_folder as run_folder
from .folder import session_record as session_record
from .folder import starting_weights_file as starting_weights_file
from .plan import matched_controls as matched_controls
from .plan import stage_order as stage_order
from .plan import study_jobs as study_jobs
from .plan import with_dependencies as with_dependencies
from .plan import with_weights as with_weights
from .schema import ResultRow as ResultRow
from .summary import Recommendation as Recommendation
from .summary import print_summary as print_summary
from .summary import recommend as recommend
from .summary import summarise as summarise
from .summary import within_budget as within_budget

__all__ = [
    "Recommendation",
    "finished_runs",
    "is_evaluated",
    "matched_controls",
    "print_summary",
    "read_sessions",
    "recommend",
    "result_row",
    "run_folder",
    "schema",
    "ResultRow",
    "is_exported",
    "session_record",
    "starting_weights_file",
    "stage_order",
    "study_jobs",
    "summarise",
    "with_dependencies",
    "with_weights",
    "within_budget",
]
