"""Paired comparisons of two stages on the same test images (DeLong, McNemar, per-class recall), and the test AUC
of what a student was taught."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import recall_score

from medkd.distillation import ensemble_logits
from medkd.evaluation import delong_test, mcnemar_test, ranking_scores
from medkd.report.collect import ReportError, StudyResults


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
