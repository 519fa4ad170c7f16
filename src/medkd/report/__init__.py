"""Study reports: report.md and a self-contained report.html with tables, paired tests and plots.

Public API: write_report, load_study, StudyResults, ReportError.
"""

from medkd.report.collect import ReportError, StudyResults, load_study
from medkd.report.document import write_report


__all__ = ["ReportError", "StudyResults", "load_study", "write_report"]
