"""Paired comparisons of two stages on the same test images (DeLong, McNemar, per-class recall), the report's
sections of them, and the test AUC of what a student was taught."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import recall_score

from medkd.distillation import ensemble_logits
from medkd.evaluation import delong_test, mcnemar_test, ranking_scores
from medkd.report.collect import ReportError, StudyResults
from medkd.report.tables import markdown_table


def p_value(p: float) -> str:
    """A p-value as the tables print it."""
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def paired_rows(results: StudyResults, first: str, second: str, seeds: list[int],
                names: tuple[str, str] | None = None) -> list[dict]:
    """Per seed: DeLong (AUC, binary tasks) and McNemar (accuracy of the decisions) of stage `first` vs stage
    `second`; columns name them as `names` (default: the stage names)."""
    rows, stages = [], (first, second)
    first, second = names or stages
    for seed in seeds:
        if not results.same_test_images(*stages, seed):
            raise ReportError(f"{stages[0]} and {stages[1]} seed {seed} were scored on other test images: a paired "
                              "test needs the same images")
        labels, p_first, d_first = results.predictions(stages[0], seed)
        _, p_second, d_second = results.predictions(stages[1], seed)
        row: dict[str, int | str] = {"seed": seed}
        if len(results.classes) == 2:
            auc = delong_test(labels, p_first[:, 1], p_second[:, 1])
            row.update({f"AUC {first}": f"{auc.statistic_a:.4f}", f"AUC {second}": f"{auc.statistic_b:.4f}",
                        "ΔAUC": f"{auc.statistic_a - auc.statistic_b:+.4f}", "DeLong p": p_value(auc.p_value)})
        accuracy = mcnemar_test(labels, d_first, d_second)
        row.update({f"acc. {first}": f"{accuracy.statistic_a:.4f}", f"acc. {second}": f"{accuracy.statistic_b:.4f}",
                    "Δacc.": f"{accuracy.statistic_a - accuracy.statistic_b:+.4f}",
                    "McNemar p": p_value(accuracy.p_value)})
        if len(results.classes) > 2:  # which class a gain (or a loss) comes from
            classes = list(range(len(results.classes)))
            change = (recall_score(labels, d_first, labels=classes, average=None, zero_division=0)
                      - recall_score(labels, d_second, labels=classes, average=None, zero_division=0))
            row.update({f"Δrecall {name}": f"{delta:+.4f}" for name, delta in zip(results.classes, change)})
        rows.append(row)
    return rows


def teacher_targets_auc(results: StudyResults, teachers: list[str], temperature: float, seed: int) -> float | None:
    """Test AUC of what a student was taught: its teachers' softened probabilities at `temperature`, averaged
    (ensemble_logits), from the teachers' own uncalibrated test predictions (log-probabilities are logits up to a
    per-image constant, which softmax ignores). None when a teacher's predictions predate uncalibrated columns."""
    probabilities = [p for p in (results.uncalibrated(teacher, seed) for teacher in teachers) if p is not None]
    if len(probabilities) < len(teachers):
        return None
    logits = torch.from_numpy(np.log(np.clip(np.stack(probabilities, axis=1), 1e-12, None)))  # (N, teachers, C)
    targets = (ensemble_logits(logits, temperature) / temperature).softmax(dim=1).numpy()
    labels, _, _ = results.predictions(teachers[0], seed)
    return ranking_scores(labels, targets)[0]


def paired_tests(results: StudyResults) -> list[str]:
    lines = ["## Paired tests on the test split", "",
             "Same test images, two models: DeLong's test for AUC, exact McNemar's test for the accuracy of the "
             "decisions (at the validation threshold). p-values are per seed and not corrected for multiple "
             "comparisons; a gain is only claimed when it holds across seeds.", ""]
    if results.controls:
        lines += ["### Knowledge distillation against its matched controls", "",
                  "Each distilled stage against the stage with the same model, weights, epochs, data and seeds but no "
                  "teacher, and, where the recipe has one, against the same trained on smoothed labels (soft targets "
                  "without a teacher).", ""]
        for student, controls in results.controls.items():
            for control in controls:
                table = paired_table(results, student, control)
                if table is None:
                    continue
                lines += [f"**{student}** vs **{control}**:", "", markdown_table(table, "seed"), ""]
                if len(table) > 1:
                    deltas = {c: table[c].astype(float) for c in table.columns if c.startswith("Δ")}
                    lines += ["Mean ± sd over seeds: " + ", ".join(
                        f"{c} {d.mean():+.4f} ± {d.std():.4f}" for c, d in deltas.items()) + ".", ""]
    else:
        lines += ["No distilled stage of this study has a matched no-KD control (a stage with the same training "
                  "settings and no teacher), so no KD gain can be measured.", ""]
    lines += adaptation_tests(results) + requested_comparisons(results)
    seed = results.seeds[0]
    others = [stage for stage in results.stages if stage != results.recommended and seed in results.seeds_of(stage)
              and results.same_test_images(results.recommended, stage, seed)]
    if others:
        rows = []
        for other in others:
            row = paired_rows(results, results.recommended, other, [seed], names=("recommended", "other"))[0]
            rows.append({"other": other, **{k: v for k, v in row.items() if k != "seed"}})
        lines += [f"### The recommended model ({results.recommended}) against each other stage, seed {seed}", "",
                  markdown_table(pd.DataFrame(rows).set_index("other"), "other stage"), ""]
    return lines


def paired_table(results: StudyResults, first: str, second: str) -> pd.DataFrame | None:
    """Stage `first` against stage `second` on every seed both have and scored on the same test images
    (paired_rows), indexed by seed; None when there is no such seed."""
    seeds = [seed for seed in sorted(set(results.seeds_of(first)) & set(results.seeds_of(second)))
             if results.same_test_images(first, second, seed)]
    return pd.DataFrame(paired_rows(results, first, second, seeds)).set_index("seed") if seeds else None


def adaptation_tests(results: StudyResults) -> list[str]:
    """Each derived stage (e.g. WiSE-FT) against the stage it is derived from (its matched control: the same run)."""
    lines = []
    for stage in results.recipe.stages:
        if stage.derive is None or stage.name not in results.stages or stage.weights_from not in results.stages:
            continue
        table = paired_table(results, stage.name, stage.weights_from)
        if table is None:
            continue
        method = stage.derive.name
        lines += [f"### {method} against the run it is derived from", "",
                  f"**{stage.name}** vs **{stage.weights_from}** (the same run, {method}'s settings fixed in the "
                  "recipe):", "", markdown_table(table, "seed"), ""]
    return lines


def requested_comparisons(results: StudyResults) -> list[str]:
    """The pairs of stages the recipe's `comparisons` names, per seed."""
    lines: list[str] = []
    for first, second in results.recipe.comparisons:
        table = paired_table(results, first, second)
        if not lines:
            lines = ["### Comparisons the recipe asks for", ""]
        if table is None:
            lines += [f"**{first}** vs **{second}**: no paired test: they share no finished seed scored on the same "
                      "test images (each stage's own test split holds other images, or another order).", ""]
            continue
        lines += [f"**{first}** vs **{second}**:", "", markdown_table(table, "seed"), ""]
    return lines


def students_and_teachers(results: StudyResults) -> list[str]:
    """Each distilled stage's test AUC beside that of its teachers' targets (same seeds): how close distillation
    brought the student to what it was shown."""
    rows = []
    for stage in results.recipe.stages:
        if stage.distill is None or stage.name not in results.stages:
            continue
        distill = results.recipe.stage_distill(stage)
        assert distill is not None  # stage.distill is set
        seeds = [seed for seed in results.seeds_of(stage.name)
                 if all(seed in results.seeds_of(teacher) for teacher in distill.teachers)]
        pairs = [(teacher_targets_auc(results, distill.teachers, distill.temperature, seed),
                  results.evaluation(stage.name, seed).at_argmax["auc"]) for seed in seeds]
        pairs = [(teacher, student) for teacher, student in pairs if teacher is not None]
        if not pairs:
            continue
        teacher, student = np.array(pairs).T
        gap = student - teacher
        members = [np.mean([results.evaluation(t, seed).at_argmax["auc"] for seed in seeds])
                   for t in distill.teachers]
        rows.append({"student": stage.name, "teachers": " + ".join(distill.teachers), "T": distill.temperature,
                     "seeds": len(pairs), "each teacher's AUC": ", ".join(f"{auc:.4f}" for auc in members),
                     "teachers' AUC": f"{teacher.mean():.4f}",
                     "student AUC": f"{student.mean():.4f}",
                     "student - teachers": f"{gap.mean():+.4f} ± {gap.std(ddof=1) if len(gap) > 1 else 0:.4f}"})
    if not rows:
        return []
    return ["### Students and what they were taught", "",
            "Test AUC of each distilled stage beside the test AUC of its teachers' targets (their probabilities "
            "softened at the student's temperature and averaged over the teachers, from the teachers' own test "
            "predictions), same seeds: the ceiling the teachers set, and how close the student came to it. Each "
            "teacher's own test AUC (calibrated, mean over the same seeds) shows what the ensemble adds.", "",
            markdown_table(pd.DataFrame(rows).set_index("student"), "student"), ""]
