"""Studies: every stage of a recipe for several seeds, teachers first, finished stages skipped, one table.

Public API: run_study, with_weights, summarise, recommend, print_summary, stage_order.
"""

from medkd.study.runner import run_study, stage_order, with_weights
from medkd.study.summary import print_summary, recommend, summarise

__all__ = ["print_summary", "recommend", "run_study", "stage_order", "summarise", "with_weights"]
