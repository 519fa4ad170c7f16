"""A study's comparison: mean and sd over seeds per stage, the recommended model, the table on screen."""

from __future__ import annotations

import logging

import pandas as pd
from rich.console import Console
from rich.table import Table

from medkd.config import Recipe, SelectionConfig

log = logging.getLogger(__name__)

COLUMNS = [("val_auc", "val AUC"), ("test_auc", "test AUC"), ("test_accuracy", "accuracy"),
           ("test_recall", "sensitivity"), ("test_specificity", "specificity"), ("test_f1", "F1")]


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds per stage (stages in study order)."""
    numeric = runs.drop(columns="seed")
    summary = numeric.groupby("stage", sort=False).agg(["mean", "std"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    return summary


def within_budget(summary: pd.DataFrame, selection: SelectionConfig) -> pd.Index:
    """The stages within the selection's deployment budget (parameters, CPU latency): all without one."""
    fits = pd.Series(True, index=summary.index)
    if selection.max_parameters is not None:
        fits &= summary["parameters_mean"] <= selection.max_parameters
    if selection.max_latency_ms is not None:
        fits &= summary["latency_ms_mean"] <= selection.max_latency_ms
    return summary.index[fits]


def recommend(summary: pd.DataFrame, selection: SelectionConfig) -> str:
    """The fastest stage among those within `selection.tolerance` of the best mean validation `selection.metric`,
    looking only at the stages within the budget (at all of them, with a warning, when none is)."""
    candidates = within_budget(summary, selection)
    if candidates.empty:
        log.warning("no stage is within the selection budget (max_parameters %s, max_latency_ms %s): the "
                    "recommendation ignores it", selection.max_parameters, selection.max_latency_ms)
        candidates = summary.index
    scores = summary.loc[candidates, f"val_{selection.metric}_mean"]
    contenders = summary.loc[scores.index[scores >= scores.max() - selection.tolerance]]
    return str(contenders["latency_ms_mean"].idxmin())


def print_summary(summary: pd.DataFrame, recipe: Recipe, console: Console) -> None:
    """The comparison table (test metrics at each model's validation threshold) and the recommendation."""
    table = Table(title=f"{recipe.name}: test metrics at each model's validation threshold, mean ± sd over "
                        f"{recipe.seeds} seed(s)")
    table.add_column("stage", no_wrap=True)
    for header in [*(h for _, h in COLUMNS), "parameters", "latency ms"]:
        table.add_column(header, justify="right")
    for stage, row in summary.iterrows():
        cells = [f"{row[c + '_mean']:.3f}" + ("" if pd.isna(row[c + "_std"]) else f" ± {row[c + '_std']:.3f}")
                 for c, _ in COLUMNS]  # one seed has no sd
        table.add_row(str(stage), *cells, f"{row['parameters_mean']:,.0f}", f"{row['latency_ms_mean']:.1f}")
    console.print(table)
    best = recommend(summary, recipe.selection)
    console.print(f"recommended (validation {recipe.selection.metric} within {recipe.selection.tolerance} of the "
                  f"best, then the fastest): [bold]{best}[/bold]")
