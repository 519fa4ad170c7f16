"""Evaluate a run folder on one split: predictions, metrics at argmax and at the validation threshold, intervals."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from medkd.data import PreparedData, prepare, run_data_config
from medkd.device import inference_device
from medkd.evaluation.bootstrap import bootstrap_intervals
from medkd.evaluation.calibration import calibrated
from medkd.evaluation.config import EvaluationConfig
from medkd.evaluation.efficiency import measure_efficiency
from medkd.evaluation.features import probe_logits, run_backbone_identity
from medkd.evaluation.metrics import classification_metrics, expected_calibration_error
from medkd.evaluation.ood import load_guard
from medkd.evaluation.predict import predict_run_logits, predict_with_features
from medkd.files import BEST, EVALUATION_FOLDER, evaluation_file, predictions_file, write_json
from medkd.models import load_model
from medkd.tracking import log_evaluation


@dataclass
class Evaluation:
    """Metrics of one model on one split. `at_threshold` is None for multi-class tasks (argmax only).

    Attributes
    ----------
    run : str
        The run folder.
    split : str
    classes : list of str
    images : int
        Images of the split.
    threshold : float or None
        The decision threshold on P(positive), chosen on validation when the model was trained; None for
        multi-class tasks.
    at_argmax, at_threshold : dict
        `classification_metrics` of the calibrated probabilities, by argmax and at `threshold`.
    intervals : dict of str to (float, float)
        Bootstrap confidence intervals of the scalar metrics at the threshold (argmax for multi-class); empty
        when switched off. Drawn by patient where the data knows its patients (`resampled`).
    confidence : float
        Of the intervals.
    seconds : float
        Wall-clock time of the evaluation.
    efficiency : dict or None
        `Efficiency.to_dict()`; None when not measured.
    calibration : dict or None
        The temperature, and the top-label ECE without it (raw softmax) and with it.
    ood : dict or None
        The guard's threshold and how many images of the split it flags; None without one.
    resampled : str or None
        What the bootstrap resampled: "N patients", or images where the data has no patient ids.
    """

    run: str
    split: str
    classes: list[str]
    images: int
    threshold: float | None  # chosen on validation when the model was trained
    at_argmax: dict
    at_threshold: dict | None
    intervals: dict[str, tuple[float, float]]  # of the metrics at the threshold (argmax for multi-class)
    confidence: float
    seconds: float
    efficiency: dict | None = None  # see efficiency.Efficiency; None when not measured
    calibration: dict | None = None  # temperature, and the top-label ECE without it (raw softmax) and with it
    ood: dict | None = None  # the guard's threshold and how many images of the split it flags; None without one
    resampled: str | None = None  # what the bootstrap drew: "N patients", or images where patients are unknown

    def to_dict(self) -> dict:
        """The fields as a plain dict (what evaluation/{split}.json holds)."""
        return asdict(self)

    @classmethod
    def read(cls, folder: str | Path, split: str) -> Evaluation:
        """The evaluation of run `folder` on `split` as `evaluate_run` wrote it (evaluation/{split}.json); every
        reader goes through here, not through the file's keys."""
        path = Path(folder) / evaluation_file(split)
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: evaluate the run first (medkd evaluate {folder} --split "
                                    f"{split})")
        raw = json.loads(path.read_text())
        raw["intervals"] = {name: tuple(bounds) for name, bounds in raw.get("intervals", {}).items()}
        return cls(**{field.name: raw[field.name] for field in fields(cls) if field.name in raw})


def evaluate_run(folder: str | Path, split: str = "test", *, settings: EvaluationConfig = EvaluationConfig(),
                 data_path: str | None = None, cache_dir: str | None = None, efficiency: bool = False,
                 data: PreparedData | None = None, accelerator: str = "auto", show_progress: bool = True) -> Evaluation:
    """Evaluate run `folder`'s best model on `split` (with `efficiency`: also its CPU cost); writes
    evaluation/{split}.json and {split}_predictions.csv. `data`: the run's prepared data, when the caller has it;
    `accelerator`: where it predicts (a Lightning setting, as in training; the CPU cost is always the CPU's).

    Probabilities are calibrated with the card's temperature; a run with a guard is scored in one pass that also
    gives each image's guard score; a linear probe without one, from its cached backbone features. The predictions
    table has one row per image: ref, label, p_CLASS and uncalibrated_p_CLASS per class, predicted, and with a
    guard ood_score and in_distribution.

    Parameters
    ----------
    folder : str or Path
        A finished run folder.
    split : {"train", "val", "test"}, default "test"
    settings : EvaluationConfig
        Bootstrap resamples, confidence, calibration bins, seed.
    data_path, cache_dir : str, optional
        Where the run's data and its cache are now, when not where the run found them.
    efficiency : bool, default False
        Also measure the CPU cost (`measure_efficiency`).
    data : PreparedData, optional
        The run's prepared data; default: prepared again from the run's config.yaml.
    accelerator : str, default "auto"
        Where it predicts.
    show_progress : bool, default True

    Returns
    -------
    Evaluation

    Raises
    ------
    CardError
        A ModelError: the folder has no card this medkd can read.
    DataError
        When the run's data settings or data cannot be found or read.
    """
    started = time.perf_counter()
    folder = Path(folder)
    model, card = load_model(folder)
    if data is None:
        data = prepare(run_data_config(folder, data_path, cache_dir), show_progress=show_progress)
    images, labels = data.split(split)
    guard = load_guard(folder, card.ood)
    device = inference_device(accelerator)
    probe = run_backbone_identity(folder, card)
    if guard is None and probe is not None:  # a linear probe: its head on the cached features of its frozen backbone
        logits, scores, ood = probe_logits(model, probe, card, data, split, device=device), None, None
    elif guard is None:
        logits, scores, ood = predict_run_logits(model, images, card, device=device), None, None
    else:  # one pass: logits and the guard's features, as in predict and serve
        logits, features = predict_with_features(model, images, card, guard.features, device=device)
        scores = guard.scores(features)
        flagged = int((~guard.in_distribution(scores)).sum())
        ood = {"threshold": guard.threshold, "val_pass_rate": guard.record.get("val_pass_rate"), "flagged": flagged,
               "flagged_share": flagged / max(len(labels), 1)}
    temperature = card.temperature
    probabilities, uncalibrated = calibrated(logits, temperature), calibrated(logits)
    calibration = {"temperature": temperature,
                   "ece_uncalibrated": expected_calibration_error(labels, uncalibrated, settings.calibration_bins),
                   "ece": expected_calibration_error(labels, probabilities, settings.calibration_bins)}
    threshold = card.threshold if card.binary else None
    at_argmax = classification_metrics(labels, probabilities, calibration_bins=settings.calibration_bins)
    at_threshold = (classification_metrics(labels, probabilities, threshold, calibration_bins=settings.calibration_bins)
                    if threshold is not None else None)
    intervals, resampled = {}, None
    if settings.bootstrap_resamples:
        patients = data.samples.loc[data.samples["split"] == split, "patient"].to_numpy()
        by_patient = data.source.patients_known
        intervals = bootstrap_intervals(labels, probabilities, threshold, resamples=settings.bootstrap_resamples,
                                        confidence=settings.confidence, seed=settings.seed,
                                        calibration_bins=settings.calibration_bins,
                                        groups=patients if by_patient else None)
        resampled = f"{len(set(patients))} patients" if by_patient else "images (the data has no patient ids)"
    cost = measure_efficiency(model, images.shape[1:], checkpoint=folder / BEST).to_dict() if efficiency else None
    result = Evaluation(str(folder), split, card.classes, len(labels), threshold, at_argmax, at_threshold,
                        intervals, settings.confidence, time.perf_counter() - started, cost, calibration, ood,
                        resampled)
    out = folder / EVALUATION_FOLDER
    out.mkdir(exist_ok=True)
    refs = data.samples.loc[data.samples["split"] == split, "ref"].to_numpy()
    table = pd.DataFrame({"ref": refs, "label": labels})
    for index, name in enumerate(card.classes):
        table[f"p_{name}"] = probabilities[:, index]
    for index, name in enumerate(card.classes):  # the raw softmax: the report's reliability before
        table[f"uncalibrated_p_{name}"] = uncalibrated[:, index]
    table["predicted"] = np.argmax(probabilities, axis=1) if threshold is None else (probabilities[:, 1] >= threshold)
    table["predicted"] = table["predicted"].astype(int)
    if scores is not None:
        assert guard is not None  # scores come from the guard
        table["ood_score"], table["in_distribution"] = scores, guard.in_distribution(scores)
    table.to_csv(folder / predictions_file(split), index=False)
    # The JSON last, and whole: a study takes its presence as "this split is evaluated", so a run killed while
    # writing must not leave it beside a missing or half-written predictions file.
    write_json(folder / evaluation_file(split), result.to_dict())
    log_evaluation(folder, split)  # a run tracked in MLflow gets the scores and files too
    return result
