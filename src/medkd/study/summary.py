"""A study's comparison: mean and sd over seeds per stage, the recommended model, the table on screen."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
from rich.console import Console
from rich.table import Table

from medkd.config import Recipe, SelectionConfig
from medkd.study import schema

TEST_AUC = schema.score("test", "auc")
TEST_ACCURACY = schema.score("test", "accuracy")
TEST_RECALL = schema.score("test", "recall")
TEST_SPECIFICITY = schema.score("test", "specificity")

log = logging.getLogger(__name__)

COLUMNS = [(schema.score("val", "auc"), "val AUC"), (TEST_AUC, "test AUC"),
           (TEST_ACCURACY, "accuracy"), (TEST_RECALL, "sensitivity"),
           (TEST_SPECIFICITY, "specificity"), (schema.score("test", "f1"), "F1")]


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
        fits &= summary[schema.mean(schema.PARAMETERS)] <= selection.max_parameters
    if selection.max_latency_ms is not None:
        fits &= summary[schema.mean(schema.LATENCY_MS)] <= selection.max_latency_ms
    return summary.index[fits]


@dataclass(frozen=True)
class Recommendation:
    """The recommended stage and each step of the rule that led to it (SelectionConfig), for the report."""

    stage: str
    in_budget: list[str]  # every stage when none fits the budget (then ignored)
    budget_ignored: bool
    contenders: list[str]  # within tolerance of the best validation metric, in the budget
    equally_fast: list[str]  # contenders within the latency tolerance of the fastest contender
    best_overall: str  # the best validation metric of all stages, budget or not

    def reason(self, summary: pd.DataFrame, selection: SelectionConfig) -> str:
        """Why this stage, step by step (validation scores and cost only)."""
        metric, tie = selection.metric, selection.tie_breaker
        val, latency = summary[schema.mean(schema.score("val", metric))], summary[schema.mean(schema.LATENCY_MS)]
        steps = []
        if selection.has_budget:
            steps.append("no stage fits the budget, so it was ignored" if self.budget_ignored
                         else f"within the budget: {names(self.in_budget)} ({len(self.in_budget)} of {len(summary)})")
        steps.append(f"within {selection.tolerance} of the best validation {metric} ({val[self.in_budget].max():.4f}): "
                     f"{names(self.contenders)}")
        steps.append(f"as fast as the fastest of those ({latency[self.contenders].min():.2f} ms; within "
                     f"{selection.latency_tolerance:.0%}, or the same network: equal MACs and parameters): "
                     f"{names(self.equally_fast)}")
        if len(self.equally_fast) > 1:
            values = summary.loc[self.equally_fast, schema.mean(schema.score("val", tie))].sort_values()
            steps.append(f"the lowest validation {tie.replace('_', '-')} of those: " + ", ".join(
                f"{stage} {value:.4f}" for stage, value in values.items()))
        return "; ".join(steps) + "."


def names(stages: list[str]) -> str:
    return ", ".join(stages)


def recommend(summary: pd.DataFrame, selection: SelectionConfig) -> Recommendation:
    """The stage a user should deploy, by `selection`'s rule (see SelectionConfig), from the summary's mean
    validation scores and CPU latency; a budget that no stage fits is ignored with a warning."""
    in_budget = within_budget(summary, selection)
    ignored = in_budget.empty
    if ignored:
        log.warning("no stage is within the selection budget (max_parameters %s, max_latency_ms %s): the "
                    "recommendation ignores it", selection.max_parameters, selection.max_latency_ms)
        in_budget = summary.index
    scores = summary.loc[in_budget, schema.mean(schema.score("val", selection.metric))]
    contenders = scores.index[scores >= scores.max() - selection.tolerance]
    latency = summary.loc[contenders, schema.mean(schema.LATENCY_MS)]
    fastest = latency.idxmin()
    close = latency <= latency[fastest] * (1 + selection.latency_tolerance)
    # the same network costs the same, whatever the timer says (noise of a shared CPU)
    size = [schema.mean(schema.MACS), schema.mean(schema.PARAMETERS)]
    if set(size) <= set(summary.columns):
        cost = summary.loc[contenders, size]
        close |= (cost == cost.loc[fastest]).all(axis=1)
    equally_fast = latency.index[close]
    tie = summary.loc[equally_fast, schema.mean(schema.score("val", selection.tie_breaker))]
    # An older study's runs have no validation log-loss (NaN): the fastest of them, as medkd chose before.
    stage = tie.idxmin() if tie.notna().any() else latency[equally_fast].idxmin()
    best_overall = summary[schema.mean(schema.score("val", selection.metric))].idxmax()
    return Recommendation(str(stage), [str(s) for s in in_budget], ignored, [str(s) for s in contenders],
                          [str(s) for s in equally_fast], str(best_overall))


def print_summary(summary: pd.DataFrame, recipe: Recipe, console: Console) -> None:
    """The comparison table (test metrics at each model's validation threshold) and the recommendation."""
    table = Table(title=f"{recipe.name}: test metrics at each model's validation threshold, mean ± sd over "
                        f"{recipe.seeds} seed(s)")
    table.add_column("stage", no_wrap=True)
    for header in [*(h for _, h in COLUMNS), "parameters", "latency ms"]:
        table.add_column(header, justify="right")
    for stage, row in summary.iterrows():
        cells = [f"{row[schema.mean(c)]:.3f}" + ("" if pd.isna(row[schema.sd(c)]) else f" ± {row[schema.sd(c)]:.3f}")
                 for c, _ in COLUMNS]  # one seed has no sd
        table.add_row(str(stage), *cells, f"{row[schema.mean(schema.PARAMETERS)]:,.0f}",
                      f"{row[schema.mean(schema.LATENCY_MS)]:.1f}")
    console.print(table)
    console.print(f"recommended: [bold]{recommend(summary, recipe.selection).stage}[/bold]")
