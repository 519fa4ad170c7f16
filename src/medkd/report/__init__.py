"""Study reports: report.md and a self-contained report.html with tables, paired tests and plots.

Public API: write_report, load_study, StudyResults, ReportError; console_answer (the answer in three lines).
"""

import lazy_loader

# Submodules load on first use: `import medkd.report` costs nothing until a name is used
# (the public API and its types are in __init__.pyi).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
