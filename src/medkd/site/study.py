"""The site-calibration protocol, apart from the main results: the official test split is cut by patient into a
site-calibration part (default 25 %) and a site-evaluation part; trained runs are scored on the evaluation part
as trained, with a site threshold, with a site temperature and threshold, with AdaBN, with AdaBN and a site
temperature and threshold, and with the class prior re-estimated by EM (site.prior). The calibration part is the
only site data any variant sees (AdaBN and the prior shift without its labels).
Beside them, not a variant: the accuracy ceiling, the threshold that is best on the evaluation part itself."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from medkd.data import PreparedData, prepare, run_data_config
from medkd.derive import estimate_site_prior, reweighted, training_prior
from medkd.evaluation import ThresholdConfig, calibrated, choose_threshold, classification_metrics, predict_run_logits
from medkd.files import SITE_STUDY_MARKDOWN, SITE_STUDY_TABLE, write_text_atomically
from medkd.models import load_model, reestimate_batchnorm
from medkd.site.adapt import site_calibration

PRIOR_SHIFT = "prior shift (EM, no site labels)"  # the calibration part's images without their labels
VARIANTS = ("as trained", "site threshold", "site temperature + threshold", "AdaBN",
            "AdaBN + site temperature + threshold", PRIOR_SHIFT)
CEILING = "ceiling: best threshold on the evaluation part"  # of the model as trained; uses the labels it scores
METRICS = ("accuracy", "recall", "specificity", "auc", "ece")
LABEL = ("Site-calibration protocol: part of the official test split calibrates, the rest evaluates. Not the "
         "main results, and not comparable with them.")


def site_parts(data: PreparedData, calibration_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in data.split("test") order) of the site-calibration and site-evaluation parts: patients kept
    whole, classes stratified, drawn with `seed`."""
    test = data.samples[data.samples["split"] == "test"]
    folds = StratifiedGroupKFold(n_splits=round(1 / calibration_fraction), shuffle=True, random_state=seed)
    evaluation, calibration = next(folds.split(np.zeros(len(test)), test["label"], test["patient"]))
    return calibration, evaluation


def scores(labels: np.ndarray, logits, temperature: float, threshold: float | None) -> dict[str, float]:
    return probability_scores(labels, calibrated(logits, temperature), threshold)


def probability_scores(labels: np.ndarray, probabilities: np.ndarray, threshold: float | None) -> dict[str, float]:
    metrics = classification_metrics(labels, probabilities, threshold, details=False)
    return {name: metrics[name] for name in METRICS}


def run_variants(folder: Path, data: PreparedData, calibration: np.ndarray, evaluation: np.ndarray) -> list[dict]:
    """The variants' scores of one run on the evaluation part, and (binary tasks) the accuracy ceiling of the
    model as trained: what the best of all thresholds scores there, which no threshold chosen without those labels
    can pass."""
    model, card = load_model(folder)
    images, labels = data.split("test")
    binary = card.binary
    rule = ThresholdConfig.model_validate(card.threshold_rule or {})
    logits = predict_run_logits(model, images, card)
    temperature, threshold = card.temperature, card.threshold if binary else None
    rows = {"as trained": scores(labels[evaluation], logits[evaluation], temperature, threshold)}
    site_threshold = (choose_threshold(labels[calibration], calibrated(logits[calibration], temperature)[:, 1], rule)
                      if binary else None)
    rows["site threshold"] = scores(labels[evaluation], logits[evaluation], temperature, site_threshold)
    site = site_calibration(model, card, images[calibration], labels[calibration])
    rows["site temperature + threshold"] = scores(labels[evaluation], logits[evaluation],
                                                  site["calibration"].temperature, site.get("threshold"))
    adapted = copy.deepcopy(model)
    # AdaBN on the calibration part's images, without their labels
    reestimate_batchnorm(adapted, images[calibration], card.normalisation)
    adapted_logits = predict_run_logits(adapted, images, card)
    rows["AdaBN"] = scores(labels[evaluation], adapted_logits[evaluation], temperature, threshold)
    site = site_calibration(adapted, card, images[calibration], labels[calibration])
    rows["AdaBN + site temperature + threshold"] = scores(labels[evaluation], adapted_logits[evaluation],
                                                          site["calibration"].temperature, site.get("threshold"))
    # the site's class mix by EM on the calibration part's probabilities (no labels), against training's
    train_prior = training_prior(data.samples, len(card.classes))
    estimate = estimate_site_prior(calibrated(logits[calibration], temperature), train_prior)
    shifted = reweighted(calibrated(logits[evaluation], temperature), train_prior, estimate.site_prior)
    rows[PRIOR_SHIFT] = probability_scores(labels[evaluation], shifted, threshold)
    # the last class's share (binary: the positive class): estimated, and as the evaluation part has it
    rows[PRIOR_SHIFT].update(estimated_prior=float(estimate.site_prior[-1]),
                             evaluation_prior=float(np.mean(labels[evaluation] == len(card.classes) - 1)))
    if binary:
        ceiling = choose_threshold(labels[evaluation], calibrated(logits[evaluation], temperature)[:, 1],
                                   ThresholdConfig(rule="accuracy"))  # on the very labels it is scored on
        rows[CEILING] = scores(labels[evaluation], logits[evaluation], temperature, ceiling)
    return [{"variant": variant, **values} for variant, values in rows.items()]


def site_study(runs: dict[str, list[Path]], out: Path, *, splits: int = 3, calibration_fraction: float = 0.25,
               show_progress: bool = True) -> pd.DataFrame:
    """Every run of every stage ({stage: [run folders]}) under `splits` seeded site splits; writes OUT/site_study.csv
    and OUT/site_study.md (mean ± sd over runs and splits). Returns the per-run table."""
    rows = []
    for stage, folders in runs.items():
        for folder in folders:
            data = prepare(run_data_config(folder), show_progress=show_progress)
            for seed in range(splits):
                calibration, evaluation = site_parts(data, calibration_fraction, seed)
                for row in run_variants(folder, data, calibration, evaluation):
                    rows.append({"stage": stage, "run": str(folder), "split_seed": seed,
                                 "calibration_images": len(calibration), "evaluation_images": len(evaluation), **row})
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / SITE_STUDY_TABLE, index=False)
    write_text_atomically(out / SITE_STUDY_MARKDOWN, site_markdown(table, calibration_fraction))
    return table


def site_markdown(table: pd.DataFrame, calibration_fraction: float) -> str:
    grouped = table.groupby(["stage", "variant"], sort=False)[list(METRICS)]
    mean, sd = grouped.mean(), grouped.std(ddof=1).fillna(0)
    shown = pd.DataFrame({name: [f"{m:.3f} ± {s:.3f}" for m, s in zip(mean[name], sd[name])] for name in METRICS},
                         index=mean.index).rename(columns={"recall": "sensitivity", "ece": "ECE"})
    counts = table.groupby("stage")[["run", "split_seed"]].nunique()
    lines = [f"# {LABEL}", "",
             f"The official test split cut by patient: {calibration_fraction:.0%} site calibration, the rest site "
             "evaluation (stratified, seeded). Scores on the evaluation part, mean ± sd over "
             + ", ".join(f"{stage}: {row.run} run(s) x {row.split_seed} split(s)" for stage, row in counts.iterrows())
             + ". Thresholds by each run's own rule; AdaBN re-estimates batch-norm statistics on the calibration "
             "part's images without their labels; the prior shift re-estimates the class mix by EM on the "
             "calibration part's probabilities, without their labels, and re-weights the evaluation part's "
             "probabilities by it (Saerens et al. 2002), keeping the validation threshold. The ceiling row is not "
             "a variant: its threshold is the one that "
             "maximises accuracy of the model as trained on the evaluation part itself, using the labels it is "
             "scored on; no threshold chosen without them can pass it.", "",
             "| stage | variant | " + " | ".join(shown.columns) + " |", "|" + " --- |" * (len(shown.columns) + 2)]
    lines += [f"| {stage} | {variant} | " + " | ".join(row) + " |" for (stage, variant), row in shown.iterrows()]
    shift = table[table["variant"] == PRIOR_SHIFT]
    if "estimated_prior" in shift.columns and len(shift):
        lines += ["", "Class mix of the last class, estimated by EM on the calibration part (no labels) against the "
                  "evaluation part's actual share: " + "; ".join(
                      f"{stage} {rows['estimated_prior'].mean():.3f} ± {rows['estimated_prior'].std(ddof=1):.3f} "
                      f"(actual {rows['evaluation_prior'].mean():.3f})"
                      for stage, rows in shift.groupby("stage", sort=False)) + "."]
    return "\n".join(lines) + "\n"
