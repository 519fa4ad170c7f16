"""Validated settings of the data layer: where the data is, how to split it, how to preprocess it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from medkd.settings import StrictModel

# Kermany / Kaggle chest X-ray names: person123_bacteria_456.jpeg -> person123,
# IM-0115-0001.jpeg -> IM-0115, NORMAL2-IM-1427-0001.jpeg -> NORMAL2-IM-1427.
KERMANY_PATIENT_PATTERN = r"^(?P<patient>(?:NORMAL2-)?IM-\d+|person\d+)"

# Above this many pixels an image is refused before it is decoded (a decompression bomb,
# or a file that is not what it claims): 20000 x 20000 covers full-field mammography.
DEFAULT_MAX_PIXELS = 400_000_000
# Input channels above this are refused: more than 16 co-registered modalities is not an image a CNN reads.
MAX_CHANNELS = 16
# Grey and RGB data work in RGB by default (the channels ImageNet weights were trained on).
DEFAULT_CHANNELS = 3
# MRI intensities have no fixed unit: each channel of a volume (NIfTI) or slice (HDF5) is clipped to these
# percentiles of its non-zero voxels (the background is 0) and mapped onto 0..255 (docs/data.md).
INTENSITY_PERCENTILES = (0.5, 99.5)
# The working side of image files when preprocessing.size is not set (files come in any size): ImageNet's.
DEFAULT_FILE_SIZE = 224


class Preprocessing(StrictModel):
    """How every image becomes the model's input: one definition for training, evaluation and serving."""

    size: int | None = Field(None, ge=8, le=4096, description="side of the square working resolution, in pixels; "
                             "default: the images' own side for array sources (NumPy, MedMNIST), else 224")
    channels: int | None = Field(
        None, ge=1, le=MAX_CHANNELS, description="input channels: 1 grey-scale, 3 RGB, or the data's own count "
        "(e.g. 4 MRI modalities); default: the data's own count where it is neither 1 nor 3, else 3 (the ImageNet "
        "models' RGB, grey images repeated)")
    resize: Literal["squash", "pad", "crop"] = Field(
        "squash",
        description="squash: stretch to the square; pad: keep aspect, pad with black; crop: keep aspect, centre-crop",
    )


    @property
    def input_channels(self) -> int:
        """`channels` once resolved from the data (`data.resolve_preprocessing`); a program error before."""
        if self.channels is None:
            raise RuntimeError("preprocessing.channels is read before it was resolved (data.resolve_preprocessing)")
        return self.channels


class SplitPolicy(StrictModel):
    """How validation (and, if the source has none, test) splits are made: always by patient."""

    seed: int = 0
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    min_val_size: int = Field(
        100, ge=0, description="a source val split smaller than this is merged into train and re-carved"
    )
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5, description="used only when the source has no test split")
    train_fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="keep this share of the train patients (stratified, seeded; the rest is "
        "set aside, never moved to val or test): label-efficiency studies and quick runs")
    folds: int | None = Field(None, ge=2, le=100, description="patient-level stratified k-fold cross-validation: "
                              "held out in turn as the test split (a source without one) or as val (a source with "
                              "its own test split, which stays untouched); `medkd run --folds K` runs every fold")
    fold: int | None = Field(None, ge=0, description="the fold held out by this run: 0..folds-1")
    patient_pattern: str | None = Field(
        KERMANY_PATIENT_PATTERN,
        description="regex on the file name whose group 'patient' (or first group) is the patient id; "
        "null: every image is its own patient",
    )

    @field_validator("patient_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        import re

        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"not a valid regular expression: {err}") from err
        return pattern

    @model_validator(mode="after")
    def _fold_of_the_folds(self) -> SplitPolicy:
        if self.fold is not None and (self.folds is None or self.fold >= self.folds):
            raise ValueError(f"fold {self.fold} needs folds above it (data.split.folds: {self.folds})")
        return self


class LabelRule(StrictModel):
    """Relabel files whose name matches `pattern` (a regex) as class `label`."""

    pattern: str
    label: str


class DataConfig(StrictModel):
    """One data source and everything needed to turn it into arrays."""

    path: str = Field(description="folder, .npz, .csv, NumPy folder, or medmnist:NAME[@SIZE]")
    source: str = Field("auto", description="auto (detected from the path) or a registered source: folder, medmnist, "
                                            "numpy, csv, ... (medkd.data.available_sources())")
    source_settings: dict = Field(default_factory=dict, description="the source's own settings (its registered "
                                  "settings model), e.g. csv: label_column, patient_column")
    classes: list[str] | None = Field(None, description="class names in label order; default: sorted names found")
    label_rules: list[LabelRule] = Field(default_factory=list)
    on_bad_file: Literal["skip", "fail"] = "skip"
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0)
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    split: SplitPolicy = Field(default_factory=SplitPolicy)
    cache_dir: str | None = Field(None, description="default: $MEDKD_CACHE or ~/.cache/medkd")

    @field_validator("source")
    @classmethod
    def _registered(cls, source: str) -> str:
        from medkd.data.sources import AUTO, available_sources  # the sources import this module

        if source != AUTO and source not in available_sources():
            raise ValueError(f"unknown data source {source!r}: use {AUTO} or one of {available_sources()}")
        return source

    @model_validator(mode="after")
    def _the_sources_own_settings(self) -> DataConfig:
        from medkd.data.sources import AUTO, source_settings_error

        if self.source != AUTO:  # with auto, checked once the layout says which source it is
            problem = source_settings_error(self.source, self.source_settings)
            if problem:
                raise ValueError(problem)
        return self


def cache_root(config: DataConfig) -> Path:
    """Folder of the decode cache and downloads."""
    return Path(config.cache_dir or os.environ.get("MEDKD_CACHE") or Path.home() / ".cache" / "medkd")
