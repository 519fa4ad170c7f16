# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .answer import console_answer as console_answer
from .collect import ReportError as ReportError
from .collect import StudyResults as StudyResults
from .collect import load_study as load_study
from .document import write_report as write_report
from .folds import CrossValidation as CrossValidation
from .folds import cross_validation as cross_validation
from .folds import fold_folder as fold_folder
from .folds import write_cross_validation_report as write_cross_validation_report

__all__ = ["CrossValidation", "ReportError", "StudyResults", "console_answer", "cross_validation", "fold_folder",
           "load_study", "write_cross_validation_report", "write_report"]
