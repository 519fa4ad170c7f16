"""The report's plots, one function each; every one takes a StudyResults and returns a matplotlib Figure.

Per-run plots (ROC, confusion, curves, reliability) show one seed, the first, so curves stay readable;
the trade-off plot shows means and sds over all seeds.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, auc, roc_curve
from sklearn.preprocessing import label_binarize

from medkd.report.collect import StudyResults
from medkd.study import schema

TEST_AUC = schema.score("test", "auc")

PANEL_INCHES = 4.2
SMALLEST_MARKER, LARGEST_MARKER = 30, 900  # marker areas (pt^2) of the smallest and largest model


def roc_curves(results: StudyResults, seed: int) -> Figure:
    """Test ROC of every stage on one plot (binary: the positive class; multi-class: micro-average)."""
    figure = Figure(figsize=(PANEL_INCHES * 1.4, PANEL_INCHES * 1.3), layout="constrained")
    axes = figure.add_subplot()
    binary = len(results.classes) == 2
    for stage in results.stages:
        labels, probabilities, _ = results.predictions(stage, seed)
        if binary:
            fpr, tpr, _ = roc_curve(labels, probabilities[:, 1])
        else:
            onehot = label_binarize(labels, classes=range(len(results.classes)))
            fpr, tpr, _ = roc_curve(onehot.ravel(), probabilities.ravel())
        axes.plot(fpr, tpr, label=f"{stage} (AUC {auc(fpr, tpr):.3f})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    kind = f"positive class {results.classes[1]}" if binary else "micro-average over classes"
    axes.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity (true positive rate)",
             title=f"Test ROC, seed {seed} ({kind})", xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="lower right", fontsize="small")
    return figure


def confusion_matrices(results: StudyResults, seed: int) -> Figure:
    """Test confusion matrix of every stage at its validation threshold (argmax for multi-class)."""
    stages = results.stages
    columns = min(4, len(stages))
    rows = math.ceil(len(stages) / columns)
    figure = Figure(figsize=(columns * PANEL_INCHES * 0.8, rows * PANEL_INCHES * 0.8), layout="constrained")
    for index, stage in enumerate(stages):
        evaluation = results.evaluation(stage, seed)
        scores = evaluation.at_threshold or evaluation.at_argmax
        axes = figure.add_subplot(rows, columns, index + 1)
        ConfusionMatrixDisplay(np.array(scores["confusion_matrix"]), display_labels=results.classes).plot(
            ax=axes, colorbar=False, cmap="Blues")
        axes.set_title(stage, fontsize="medium")
    figure.suptitle(f"Test confusion matrices, seed {seed} (rows: true class, columns: predicted)")
    return figure


def training_curves(results: StudyResults, seed: int) -> Figure:
    """Per epoch: training loss, validation loss and validation AUC of every stage."""
    panels = [("train_loss", "training loss"), ("val_loss", "validation loss"), ("val_auc", "validation AUC")]
    figure = Figure(figsize=(PANEL_INCHES * len(panels), PANEL_INCHES), layout="constrained")
    axes = figure.subplots(1, len(panels))
    for stage in results.stages:
        curves = results.curves(stage, seed)
        epochs = curves["epoch"] + 1
        for ax, (column, _) in zip(axes, panels):
            ax.plot(epochs, curves[column], marker="o", markersize=3, label=stage)
    for ax, (_, title) in zip(axes, panels):
        ax.set(xlabel="epoch", title=title)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[-1].legend(fontsize="small")
    figure.suptitle(f"Training curves, seed {seed} (distilled stages: training loss includes the KD term)")
    return figure


def reliability_diagram(results: StudyResults, seed: int) -> Figure:
    """Observed accuracy against predicted confidence (top class), binned as for the ECE, per stage: calibrated
    (solid) and, where the run kept it, the raw softmax before its temperature (dotted, same colour)."""
    bins = results.recipe.evaluation.calibration_bins
    edges = np.linspace(0, 1, bins + 1)
    figure = Figure(figsize=(PANEL_INCHES * 1.4, PANEL_INCHES * 1.3), layout="constrained")
    axes = figure.add_subplot()

    def binned(labels: np.ndarray, probabilities: np.ndarray) -> tuple[list[float], list[float]]:
        confidence = probabilities.max(axis=1)
        correct = probabilities.argmax(axis=1) == labels
        which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
        filled = [b for b in range(bins) if (which == b).any()]
        return [confidence[which == b].mean() for b in filled], [correct[which == b].mean() for b in filled]

    for stage in results.stages:
        labels, probabilities, _ = results.predictions(stage, seed)
        evaluation = results.evaluation(stage, seed)
        raw = results.uncalibrated(stage, seed)
        before = (f"{evaluation.calibration['ece_uncalibrated']:.3f} -> "
                  if raw is not None and evaluation.calibration else "")
        line, = axes.plot(*binned(labels, probabilities), marker="o", markersize=3,
                          label=f"{stage} (ECE {before}{evaluation.at_argmax['ece']:.3f})")
        if raw is not None:
            axes.plot(*binned(labels, raw), color=line.get_color(), linestyle=":", linewidth=1, marker=".",
                      markersize=2)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    low = 1 / len(results.classes)
    axes.set(xlabel="confidence (probability of the predicted class)", ylabel="accuracy in the bin",
             title=f"Reliability on test, seed {seed}, {bins} bins (dotted: before temperature scaling)",
             xlim=(low, 1), ylim=(0, 1.01))
    axes.legend(loc="upper left", fontsize="small")
    return figure


def efficiency_tradeoff(results: StudyResults) -> Figure:
    """Mean test AUC (error bars: sd over seeds) against CPU latency at batch 1; marker area ~ parameters."""
    summary = results.summary
    parameters = summary[schema.mean(schema.PARAMETERS)]
    areas = SMALLEST_MARKER + (LARGEST_MARKER - SMALLEST_MARKER) * parameters / parameters.max()
    figure = Figure(figsize=(PANEL_INCHES * 2, PANEL_INCHES * 1.2), layout="constrained")
    axes = figure.add_subplot()
    for (stage, row), area in zip(summary.iterrows(), areas):
        axes.errorbar(row[schema.mean(schema.LATENCY_MS)], row[schema.mean(TEST_AUC)],
                      yerr=np.nan_to_num(row[schema.sd(TEST_AUC)]), fmt="none", ecolor="grey", capsize=3)
        axes.scatter(row[schema.mean(schema.LATENCY_MS)], row[schema.mean(TEST_AUC)], s=area, alpha=0.6,
                     edgecolors="black" if stage == results.recommended else "none", linewidths=2,
                     label=f"{stage} ({row[schema.mean(schema.PARAMETERS)] / 1e6:.2f} M)")
    axes.set_xscale("log")
    axes.set(xlabel="CPU latency at batch 1, median (ms, log scale)", ylabel="test AUC (mean over seeds)",
             title="Accuracy vs cost (marker area ~ parameters; outlined: recommended)")
    # A legend beside the plot, not labels beside the markers: close models' labels would cover each other.
    legend = axes.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small", title="stage (parameters)")
    for handle in legend.legend_handles:
        assert isinstance(handle, PathCollection)  # the handles of scatter markers
        handle.set_sizes([SMALLEST_MARKER * 2])
    return figure


def label_efficiency_curves(results: StudyResults) -> Figure:
    """Mean test AUC (error bars: sd over seeds) against the share of labelled train patients, one line per method."""
    summary = results.summary
    figure = Figure(figsize=(PANEL_INCHES * 1.5, PANEL_INCHES * 1.1), layout="constrained")
    axes = figure.add_subplot()
    for method, stages in results.label_efficiency.items():
        points = sorted((fraction, stage) for fraction, stage in stages.items() if stage in summary.index)
        fractions = [fraction for fraction, _ in points]
        rows = summary.loc[[stage for _, stage in points]]
        axes.errorbar(fractions, rows[schema.mean(TEST_AUC)], yerr=np.nan_to_num(rows[schema.sd(TEST_AUC)]), marker="o",
                      capsize=3, label=method)
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    axes.set(xlabel="share of train patients labelled (log scale)", ylabel="test AUC (mean over seeds)",
             title="Label efficiency")
    axes.legend(loc="lower right", fontsize="small")
    return figure
