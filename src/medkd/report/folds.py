"""A cross-validated study (`medkd run --folds K`): K studies, one per patient-level fold (OUT/fold{k}), each with
its own report; here the view across them: mean ± sd over folds and the held-out folds' predictions pooled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import markdown
import numpy as np
import pandas as pd

from medkd.config import Recipe
from medkd.evaluation import classification_metrics
from medkd.files import FOLD, FOLD_POOLED, FOLD_RUNS, FOLD_SUMMARY, REPORT_HTML, REPORT_MARKDOWN, RUNS
from medkd.report.collect import ReportError, StudyResults, load_study
from medkd.report.document import HTML_STYLE
from medkd.report.tables import markdown_table, mean_sd
from medkd.study import schema

FOLD_COLUMN = "fold"
POOLED_METRICS = ("auc", "accuracy", "recall", "specificity", "f1", "balanced_accuracy")
SHOWN = [("auc", "AUC"), ("accuracy", "accuracy"), ("recall", "sensitivity"), ("specificity", "specificity"),
         ("f1", "F1")]


def fold_folder(out: Path, fold: int) -> Path:
    """Fold `fold`'s study folder in a cross-validated study OUT."""
    return out / FOLD.format(fold=fold)


@dataclass
class CrossValidation:
    """The folds' results: every run with its fold, mean ± sd over folds per stage, the pooled held-out folds."""

    folds: int
    recipe: Recipe  # a fold's recipe (the folds differ only in data.split.fold)
    held_out: str  # "test" (the folds cover the cohort) or "val" (the source's own test split is untouched)
    runs: pd.DataFrame  # runs.csv of every fold, with a fold column
    summary: pd.DataFrame  # per stage: each column's mean and sd over folds of the fold's mean over seeds
    pooled: pd.DataFrame  # per stage and seed: the scores of the held-out folds' predictions pooled
    missing: list[int]  # folds without evaluated runs yet


def held_out_split(results: StudyResults) -> str:
    """The split a fold was held out as: val when the source had its own test split, else test."""
    sizes = (results.data_check or {}).get("source_split_sizes", {})
    return "val" if sizes.get("test") else "test"


def cross_validation(out: str | Path, folds: int) -> CrossValidation:
    """Collect a cross-validated study's folds (those evaluated so far)."""
    out = Path(out)
    studies = {fold: load_study(fold_folder(out, fold)) for fold in range(folds)
               if (fold_folder(out, fold) / RUNS).exists()}
    if not studies:
        raise ReportError(f"no fold of the cross-validated study in {out} has been evaluated yet: run "
                          f"`medkd run --folds {folds}` on it")
    first = next(iter(studies.values()))
    held_out = held_out_split(first)
    runs = pd.concat([study.runs.assign(**{FOLD_COLUMN: fold}) for fold, study in studies.items()],
                     ignore_index=True)
    per_fold = runs.drop(columns=schema.SEED).groupby([schema.STAGE, FOLD_COLUMN], sort=False).mean()
    summary = per_fold.groupby(level=schema.STAGE, sort=False).agg(["mean", "std"])
    summary.columns = [schema.mean(c) if stat == "mean" else schema.sd(c) for c, stat in summary.columns]
    return CrossValidation(folds, first.recipe, held_out, runs, summary, pooled_scores(studies, held_out),
                           [fold for fold in range(folds) if fold not in studies])


def pooled_scores(studies: dict[int, StudyResults], split: str) -> pd.DataFrame:
    """Per stage and seed evaluated in every fold: the held-out `split`'s predictions of all folds pooled (each
    image once), scored with each fold's own decisions (its validation threshold)."""
    rows = []
    first = next(iter(studies.values()))
    for stage in first.stages:
        seeds = set.intersection(*(set(study.seeds_of(stage)) for study in studies.values()))
        for seed in sorted(seeds):
            parts = [study.predictions(stage, seed, split) for study in studies.values()]
            labels, probabilities, predicted = (np.concatenate([part[i] for part in parts]) for i in range(3))
            scores = classification_metrics(labels, probabilities, predicted=predicted, details=False)
            rows.append({schema.STAGE: stage, schema.SEED: seed, "split": split, "folds": len(parts),
                         "images": len(labels), **{name: scores[name] for name in POOLED_METRICS}})
    return pd.DataFrame(rows)


def write_cross_validation_report(out: str | Path, folds: int,
                                  result: CrossValidation | None = None) -> tuple[Path, Path]:
    """Write OUT's fold tables (FOLD_RUNS, FOLD_SUMMARY, FOLD_POOLED) and its report (report.md, report.html), from
    `result` when the caller has collected the folds already (`cross_validation`)."""
    out = Path(out)
    result = result or cross_validation(out, folds)
    result.runs.to_csv(out / FOLD_RUNS, index=False)
    result.summary.to_csv(out / FOLD_SUMMARY)
    result.pooled.to_csv(out / FOLD_POOLED, index=False)
    recipe = result.recipe
    done = folds - len(result.missing)
    protocol = ("each fold was the test split once, so every patient was tested exactly once; val was carved from "
                "the other folds by patient" if result.held_out == "test" else
                "each fold was the validation split once (checkpoint, temperature and threshold chosen on it); the "
                "source's own test split stayed untouched and every fold's models were scored on it")
    lines = [f"# {recipe.name}: patient-level {folds}-fold cross-validation", "",
             f"{done} of {folds} folds evaluated; {protocol}. Folds: scikit-learn's StratifiedGroupKFold by patient "
             f"(seed {recipe.data.split.seed}); {recipe.seeds} training seed(s) per fold. Each fold's own report: "
             + ", ".join(f"[fold {k}]({FOLD.format(fold=k)}/{REPORT_MARKDOWN})" for k in range(folds)
                         if k not in result.missing) + ".", ""]
    if result.missing:
        lines += [f"Not evaluated yet: folds {result.missing}.", ""]
    test_table = pd.DataFrame({name: mean_sd(result.summary, schema.score("test", metric))
                               for metric, name in SHOWN})
    test_table["val AUC"] = mean_sd(result.summary, schema.score("val", "auc"))
    test_table["parameters"] = result.summary[schema.mean(schema.PARAMETERS)].map("{:,.0f}".format)
    lines += [f"## Test scores over folds (mean ± sd over {done} folds of each fold's mean over seeds)", "",
              markdown_table(test_table), "", f"## Pooled out-of-fold scores ({result.held_out} folds pooled, each "
              "image once)", ""]
    if result.held_out == "val":
        lines += ["The held-out folds were each model's validation split, which chose its checkpoint, temperature "
                  "and threshold: these pooled scores are optimistic; the test scores above are the estimate.", ""]
    pooled = result.pooled.drop(columns=[schema.SEED, "split"]).groupby(schema.STAGE, sort=False).agg(["mean", "std"])
    pooled.columns = [schema.mean(c) if stat == "mean" else schema.sd(c) for c, stat in pooled.columns]
    pooled_table = pd.DataFrame({"images": pooled[schema.mean("images")].map("{:.0f}".format),
                                 **{name: mean_sd(pooled, metric) for metric, name in SHOWN}})
    per_fold = result.runs.groupby([schema.STAGE, FOLD_COLUMN], sort=False)[schema.score("test", "auc")].mean()
    lines += ["Each fold's predictions at its own validation threshold; AUC of the pooled probabilities (each "
              "fold's calibrated by its own temperature). Mean ± sd over seeds.", "", markdown_table(pooled_table),
              "", "## Test AUC per fold (mean over seeds)", "",
              markdown_table(per_fold.unstack(FOLD_COLUMN).rename(columns=lambda k: f"fold {k}")
                             .map("{:.3f}".format).loc[result.summary.index])]
    lines += ["", f"Tables: {FOLD_RUNS} (every run with its fold), {FOLD_SUMMARY}, {FOLD_POOLED}.", ""]
    text = "\n".join(lines)
    markdown_path, html_path = out / REPORT_MARKDOWN, out / REPORT_HTML
    markdown_path.write_text(text)
    body = markdown.markdown(text, extensions=["tables"])
    html_path.write_text(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{recipe.name}: cross-validation"
                         f"</title><style>{HTML_STYLE}</style></head><body>\n{body}\n</body></html>\n")
    return markdown_path, html_path
