"""What the MRI slice sources (hdf5, nifti) share: which slices hold brain, labels from a tumour mask, labels
written as class indices."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from medkd.settings import StrictModel


class SliceSettings(StrictModel):
    """Which slices are kept and, where labels come from the mask, what makes a slice positive."""

    min_foreground: float = Field(0.01, ge=0.0, lt=1.0, description="a slice whose share of non-zero pixels (in "
                                  "any channel) is below this holds no brain: left out (0: keep every slice)")
    min_mask_area: int = Field(1, ge=1, description="labels from the mask: positive when at least this many "
                               "pixels are non-zero in any of its channels")
    mask_classes: tuple[str, str] = Field(("no_tumour", "tumour"), description="class names of labels from the "
                                          "mask: below min_mask_area, at or above it")


def foreground_share(values: np.ndarray) -> float:
    """Share of the pixels of a slice (H, W, C) that are non-zero in any channel (skull-stripped MRI: brain)."""
    return float(np.any(values != 0, axis=-1).mean())


def mask_area(mask: np.ndarray) -> int:
    """Pixels of a mask (H, W) or (H, W, K) that are non-zero (in any of its K channels)."""
    mask = np.asarray(mask)
    return int((np.any(mask != 0, axis=-1) if mask.ndim == 3 else mask != 0).sum())


def mask_labels(areas: pd.Series, settings: SliceSettings) -> pd.Series:
    """Class names from mask areas: settings.mask_classes[1] at or above min_mask_area, else [0]."""
    negative, positive = settings.mask_classes
    return pd.Series(np.where(areas.to_numpy() >= settings.min_mask_area, positive, negative), index=areas.index)


def named_labels(values: pd.Series, classes: list[str] | None) -> pd.Series:
    """Labels as class names: class indices (0, 1, ... as manifests often write them) become the names of
    `classes` (data.classes) when those names are given and the values are not already among them."""
    values = values.astype(str).str.strip()
    if not classes or set(values) <= set(classes):
        return values
    indices = pd.to_numeric(values, errors="coerce")
    if indices.notna().all() and (indices % 1 == 0).all() and indices.between(0, len(classes) - 1).all():
        return indices.astype(int).map(dict(enumerate(classes)))
    return values
