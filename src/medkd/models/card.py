"""The run card: what a run folder's `model.json` (files.RUN_CARD) says about its model, typed and versioned.

Training writes it and every later stage (evaluate, distil, export, predict, serve, site tools, report) reads it
through `RunCard.read`, never by raw key: architecture, classes, preprocessing and normalisation (enough to
rebuild the model and feed it), the decision threshold and calibration fitted on validation, the guard, and
records of how it was trained (pretrained weights, a linear probe, distillation, a site's adaptation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medkd.data import Preprocessing
from medkd.files import RUN_CARD, write_json
from medkd.models.errors import ModelError
from medkd.models.kinds import FeatureKind

CARD_FORMAT = 1  # model.json's `format`; raise it when a change would misread older cards, and say how to migrate


class CardError(ModelError):
    """A run folder without a card this medkd can read; the message says what to do."""


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Normalisation(Record):
    """uint8 pixels -> model input: (pixel * scale - mean) / std per channel."""

    mean: list[float]
    std: list[float]
    scale: float = 1 / 255


class PretrainedRecord(Record):
    """The pretrained weights a run started from: where they came from and what input they were trained on."""

    source: str | None
    input_size: int | None = None
    mean: list[float]
    std: list[float]


class ProbeRecord(Record):
    """An lp-ft run's linear-probe step (a run folder inside the run folder)."""

    folder: str
    best_val_auc: float | None = None


class CalibrationRecord(Record):
    """The softmax temperature and where it was fitted; the measured ECE and NLL before and after it are kept under
    their own names (val_ece_before, ..., or site_... for a site's re-calibration)."""

    model_config = ConfigDict(extra="allow")

    method: str = "temperature"
    temperature: float = 1.0
    fitted_on: str = "val"


class GuardRecord(Record):
    """The out-of-distribution guard (method none: only the image checks) and the image checks of deployment."""

    method: str
    features: FeatureKind = "penultimate"  # guards from before the choice read the head's input
    train_views: int = 0
    file: str | None = None  # its tensors, in the run folder
    threshold: float | None = None
    val_pass_rate: float | None = None
    feature_dim: int | None = None
    train_images: int | None = None
    shrinkage: float | None = None
    min_pixel_std: float | None = None
    dicom_modalities: list[str] = Field(default_factory=list)
    dicom_body_parts: list[str] = Field(default_factory=list)


class DistillationRecord(Record):
    """How a student was distilled: its teachers (run folders), each teacher's input, the loss."""

    teachers: list[str]
    teacher_preprocessing: list[Preprocessing]
    loss: str
    temperature: float
    alpha: float
    teacher_outputs: str
    views: int | None = None
    mixup: float | None = None  # function matching's Beta concentration; None: unmixed


class SourceRecord(Record):
    """The data source the model was trained on and its settings (all of them, defaults included): what reads
    an input at prediction as it was read in training (an HDF5 slice's dataset, a NIfTI volume's modalities)."""

    name: str
    settings: dict[str, Any] = Field(default_factory=dict)


class RunCard(Record):
    """A run folder's model.json. `positive_class`, `threshold` and `threshold_rule` are set for two-class tasks."""

    format: int = CARD_FORMAT
    architecture: str
    model_args: dict[str, Any] = Field(default_factory=dict)
    in_chans: int
    classes: list[str]
    positive_class: str | None = None
    preprocessing: Preprocessing
    normalisation: Normalisation
    source: SourceRecord | None = None  # None: a run from before medkd recorded it
    threshold: float | None = None
    threshold_rule: dict[str, Any] | None = None  # the ThresholdConfig it was chosen by
    weights: str | None = None  # none, imagenet (or a weight tag), or the checkpoint path it started from
    transfer: str = "scratch"  # the registered transfer mode (engine.transfer) it was trained with
    frozen_backbone: bool = False  # only the head trained (transfer linear): its backbone features are cached
    epochs_trained: int | None = None
    best_checkpoint: str | None = None
    selected_on: str = "val_auc"  # the validation score that chose the best epoch (TrainConfig.select_on)
    best_val_auc: float | None = None  # validation AUC of that epoch
    calibration: CalibrationRecord | None = None
    ood: GuardRecord | None = None
    pretrained: PretrainedRecord | None = None
    probe: ProbeRecord | None = None
    distillation: DistillationRecord | None = None
    # written into a derived run's new folder (medkd.derive, medkd calibrate; the source run is never changed)
    adapted_from: str | None = None
    adaptation: dict[str, Any] | None = None
    validation_calibration: CalibrationRecord | None = None
    validation_threshold: float | None = None

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def temperature(self) -> float:
        """The calibration temperature its probabilities are divided by (1: uncalibrated)."""
        return self.calibration.temperature if self.calibration is not None else 1.0

    def write(self, folder: Path) -> None:
        """Write the card into run folder `folder`, whole or not at all."""
        write_json(Path(folder) / RUN_CARD, self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def read(cls, folder: str | Path) -> RunCard:
        """The card of run folder `folder`; CardError when it has none or one this medkd cannot read."""
        path = Path(folder) / RUN_CARD
        if not path.exists():
            raise CardError(f"{folder} is not a finished run folder: {RUN_CARD} is missing (train it first)")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise CardError(f"{path} is not valid JSON ({err}): the run was interrupted while writing it; train "
                            "it again") from None
        version = raw.get("format") if isinstance(raw, dict) else None
        if not isinstance(version, int):
            raise CardError(f"{path} has no format version: written by a medkd from before run cards; train the "
                            "run again with this medkd")
        if version > CARD_FORMAT:
            raise CardError(f"{path} is format {version}, this medkd reads up to {CARD_FORMAT}: upgrade medkd")
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'card'}: {e['msg']}" for e in err.errors()[:5])
            raise CardError(f"{path} does not match run card format {version} ({problems}): train the run again "
                            "with this medkd") from None
