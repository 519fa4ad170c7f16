"""The answer a study gives, first in its report and on the console: the model to deploy, what it costs and
scores, what its teachers scored, and what the same model scores without a teacher, with the paired tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medkd.report.collect import StudyResults
from medkd.report.paired import paired_rows, teacher_targets_auc
from medkd.report.tables import markdown_table, mean_sd
from medkd.study import schema

TEST_AUC = schema.score("test", "auc")
TEST_ACCURACY = schema.score("test", "accuracy")
TEST_RECALL = schema.score("test", "recall")
TEST_SPECIFICITY = schema.score("test", "specificity")

ROW_METRICS = [(TEST_AUC, "test AUC"), (TEST_ACCURACY, "accuracy"),
               (TEST_RECALL, "sensitivity"), (TEST_SPECIFICITY, "specificity")]


@dataclass
class Answer:
    """The recommended stage, the distilled student and its control it belongs to (None where it is neither),
    its teachers and their ensemble's test AUC per seed, and the paired tests of student vs control per seed."""

    stage: str
    student: str | None
    control: str | None
    teachers: list[str]
    teachers_auc: list[float]
    paired: list[dict]


def find_answer(results: StudyResults) -> Answer:
    stage, evaluated = results.recommended, set(results.stages)
    pairs = {student: controls[0] for student, controls in results.controls.items()
             if student in evaluated and controls[0] in evaluated}  # of an unfinished study, what it has
    student = stage if stage in pairs else next((s for s, control in pairs.items() if control == stage), None)
    control = pairs.get(student) if student is not None else None
    if student is None and stage in results.controls:  # a student whose control is not evaluated yet
        student = stage
    teachers, teachers_auc, paired = [], [], []
    if student is not None:
        distill = results.recipe.stage_distill(next(s for s in results.recipe.stages if s.name == student))
        assert distill is not None  # a student of results.controls is a distilled stage
        teachers = list(distill.teachers)
        seeds = [seed for seed in results.seeds_of(student)
                 if all(seed in results.seeds_of(teacher) for teacher in teachers)]
        teachers_auc = [auc for auc in (teacher_targets_auc(results, teachers, distill.temperature, seed)
                                        for seed in seeds) if auc is not None]
        if control is not None:
            common = sorted(set(results.seeds_of(student)) & set(results.seeds_of(control)))
            paired = paired_rows(results, student, control, common, names=("student", "control"))
    return Answer(stage, student, control, teachers, teachers_auc, paired)


def latency_int8(summary: pd.DataFrame, stage: str) -> str:
    column = schema.mean(schema.engine_latency("onnx_int8"))
    if column not in summary or pd.isna(summary.loc[stage, column]):
        return "not exported in int8"
    return f"{summary.loc[stage, column]:.2f} ms"


def stage_row(results: StudyResults, stage: str) -> dict:
    summary = results.summary
    metrics = {title: mean_sd(summary, column)[stage] for column, title in ROW_METRICS}
    return {"stage": stage, "parameters": f"{summary.loc[stage, schema.mean(schema.PARAMETERS)]:,.0f}",
            "ONNX int8 latency": latency_int8(summary, stage),
            "PyTorch fp32 latency": f"{summary.loc[stage, schema.mean(schema.LATENCY_MS)]:.2f} ms", **metrics}


def mean_pm(values: list[float], digits: int = 3) -> str:
    return (f"{np.mean(values):.{digits}f}" if len(values) < 2
            else f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}")


def paired_sentence(found: Answer) -> str:
    """KD vs its control per seed: ΔAUC (DeLong p) and Δaccuracy (McNemar p), and how many seeds favour KD."""
    if not found.paired:
        return (f"{found.student} has no evaluated control to compare with." if found.student else
                "The recommended model is not a distilled student or its control: no KD comparison applies.")
    binary = "ΔAUC" in found.paired[0]  # DeLong's test is for two classes
    per_seed = "; ".join(
        f"seed {row['seed']}: " + (f"ΔAUC {row['ΔAUC']} (DeLong p {row['DeLong p']}), " if binary else "")
        + f"Δaccuracy {row['Δacc.']} (McNemar p {row['McNemar p']})" for row in found.paired)
    favour = sum(float(row["ΔAUC" if binary else "Δacc."]) > 0 for row in found.paired)
    return (f"{found.student} (KD) vs {found.control} (no teacher), paired on the test images: {per_seed}; KD ahead "
            f"in {'AUC' if binary else 'accuracy'} in {favour} of {len(found.paired)} seed(s).")


def answer(results: StudyResults) -> list[str]:
    """The report's first section."""
    found, summary, selection = find_answer(results), results.summary, results.recipe.selection
    choice = results.recommendation
    rows = {"recommended": stage_row(results, found.stage)}
    if found.control and found.control != found.stage and found.control in results.stages:
        rows["its no-KD control"] = stage_row(results, found.control)
    if found.student and found.student != found.stage:
        rows["its distilled counterpart"] = stage_row(results, found.student)
    if found.teachers_auc:
        rows["its teachers' ensemble"] = {"stage": " + ".join(found.teachers),
                                          "test AUC": mean_pm(found.teachers_auc)}
    best = choice.best_overall
    if best != found.stage:
        rows["best validation AUC, any cost" if selection.metric == "auc" else
             f"best validation {selection.metric}, any cost"] = stage_row(results, best)
    table = pd.DataFrame.from_dict(rows, orient="index").fillna("")
    lines = ["## The answer", "",
             f"**Deploy {found.stage}.** Test metrics at its validation threshold, mean ± sd over "
             f"{len(results.seeds_of(found.stage))} seed(s); latency at batch 1 on the CPU of this study "
             "(see *How this study was run*).", "", markdown_table(table, ""), ""]
    if found.teachers_auc:
        gap = summary.loc[found.stage, schema.mean(TEST_AUC)] - np.mean(found.teachers_auc)
        lines += [f"Its teachers' ensemble (their test probabilities softened at the student's temperature and "
                  f"averaged) has test AUC {mean_pm(found.teachers_auc, 4)}; {found.stage} is at {gap:+.4f} from it.",
                  ""]
    lines += [paired_sentence(found), ""]
    if best != found.stage:
        cost = summary.loc[found.stage, schema.mean(TEST_AUC)] - summary.loc[best, schema.mean(TEST_AUC)]
        lines += [f"What the budget costs: {found.stage} has {cost:+.4f} test AUC against {best}, the best on "
                  f"validation at any cost ({summary.loc[best, schema.mean(schema.PARAMETERS)] / 1e6:.2f} M "
                  "parameters, "
                  f"{summary.loc[best, schema.mean(schema.LATENCY_MS)]:.1f} ms in PyTorch).", ""]
    lines += [f"Why {found.stage}: {choice.reason(summary, selection)} The choice read validation scores and cost "
              "only; the test split was scored after it.", ""]
    return lines


def console_answer(results: StudyResults) -> list[str]:
    """The answer in three lines, for the end of `medkd run`."""
    found, summary = find_answer(results), results.summary
    row = summary.loc[found.stage]
    first = (f"Deploy {found.stage}: {row[schema.mean(schema.PARAMETERS)]:,.0f} parameters, "
             f"{latency_int8(summary, found.stage)} "
             f"per image in ONNX int8 ({row[schema.mean(schema.LATENCY_MS)]:.2f} ms PyTorch fp32) on this CPU; "
             f"test AUC {mean_sd(summary, TEST_AUC)[found.stage]}, accuracy {row[schema.mean(TEST_ACCURACY)]:.3f}, "
             f"sensitivity {row[schema.mean(TEST_RECALL)]:.3f}, specificity {row[schema.mean(TEST_SPECIFICITY)]:.3f} "
             "at its validation threshold.")
    second = []
    if found.teachers_auc:
        second.append(f"Its teachers' ensemble: test AUC {mean_pm(found.teachers_auc)}.")
    if found.control and found.control in summary.index and found.control != found.stage:
        second.append(f"Without a teacher ({found.control}): test AUC {mean_sd(summary, TEST_AUC)[found.control]}.")
    elif found.student and found.student != found.stage:
        second.append(f"Distilled ({found.student}): test AUC {mean_sd(summary, TEST_AUC)[found.student]}.")
    second.append(paired_sentence(found))
    return [first, " ".join(second), f"Why: {results.recommendation.reason(summary, results.recipe.selection)}"]
