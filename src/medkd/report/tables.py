"""How the report writes numbers and tables."""

from __future__ import annotations

import pandas as pd

from medkd.study import schema


def mean_sd(summary: pd.DataFrame, column: str, digits: int = 3) -> pd.Series:
    """'mean ± sd' per stage ('mean' alone with one seed)."""
    return pd.Series([f"{m:.{digits}f}" if pd.isna(s) else f"{m:.{digits}f} ± {s:.{digits}f}"
                      for m, s in zip(summary[schema.mean(column)], summary[schema.sd(column)])], index=summary.index)


def markdown_table(table: pd.DataFrame, index_name: str = "stage") -> str:
    """A pipe table; cells are shown as formatted here (tabulate would re-format '0.830' as 0.83)."""
    return table.rename_axis(index_name).to_markdown(colalign=["left"] + ["right"] * table.shape[1],
                                                     disable_numparse=True)
