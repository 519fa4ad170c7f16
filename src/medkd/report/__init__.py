"""Study reports: report.md and a self-contained report.html with tables, paired tests and plots.

Public API: write_report, load_study, StudyResults, ReportError; console_answer (the answer in three lines).
"""

from medkd.report.answer import console_answer
from medkd.report.collect import ReportError, StudyResults, load_study
from medkd.report.document import write_report


__all__ = ["ReportError", "console_answer", "StudyResults", "load_study", "write_report"]
