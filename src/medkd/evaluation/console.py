"""Showing an evaluation to a person."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from medkd.evaluation.evaluate import Evaluation
from medkd.evaluation.metrics import SCALARS


def print_evaluation(result: Evaluation, console: Console) -> None:
    """Metric table (argmax, validation threshold, confidence interval) and the confusion matrix.

    Parameters
    ----------
    result : Evaluation
        What `evaluate_run` returned; its cost is shown too when it was measured.
    console : rich.console.Console
        Where the tables are printed.
    """
    decided = result.at_threshold or result.at_argmax
    table = Table(title=f"{result.run}: {result.split} split, {result.images} images")
    table.add_column("metric")
    table.add_column("argmax" if result.at_threshold is None else "at 0.5 (argmax)", justify="right")
    if result.at_threshold is not None:
        table.add_column(f"at val threshold {result.threshold:.3f}", justify="right")
    if result.intervals:
        table.add_column(f"{result.confidence:.0%} CI ({result.resampled or 'images'} resampled)", justify="right")
    for name in SCALARS:
        row = [name, f"{result.at_argmax[name]:.4f}"]
        if result.at_threshold is not None:
            row.append(f"{result.at_threshold[name]:.4f}")
        if result.intervals:
            low, high = result.intervals[name]
            row.append(f"{low:.4f} - {high:.4f}")
        table.add_row(*row)
    console.print(table)
    matrix = Table(title="confusion matrix (rows: true, columns: predicted)")
    matrix.add_column("")
    for name in result.classes:
        matrix.add_column(name, justify="right")
    for name, counts in zip(result.classes, decided["confusion_matrix"]):
        matrix.add_row(name, *(str(c) for c in counts))
    console.print(matrix)
    if result.efficiency:
        cost = result.efficiency
        size = f", checkpoint {cost['checkpoint_bytes'] / 1e6:.2f} MB" if cost["checkpoint_bytes"] is not None else ""
        console.print(f"cost: {cost['parameters']:,} parameters, {cost['macs'] / 1e6:,.1f} M MACs per image{size}; "
                      f"CPU ({cost['threads']} threads) batch 1: {cost['latency_ms_median']:.2f} ms median, "
                      f"{cost['latency_ms_p95']:.2f} ms p95; batch {cost['batch_size']}: "
                      f"{cost['throughput_images_per_s']:,.0f} images/s")
