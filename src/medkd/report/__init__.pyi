# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .answer import console_answer as console_answer
from .collect import ReportError as ReportError
from .collect import StudyResults as StudyResults
from .collect import load_study as load_study
from .document import write_report as write_report

__all__ = ["ReportError", "StudyResults", "console_answer", "load_study", "write_report"]
