"""Evaluation: metric values on hand-checked cases, thresholds chosen on validation, intervals, `medkd evaluate`."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from typer.testing import CliRunner

from conftest import kermany_like_config
from medkd.cli import app
from medkd.data import prepare
from medkd.device import inference_batch_size
from medkd.engine import TrainConfig, fit
from medkd.evaluation import (
    SCALARS,
    CalibrationConfig,
    Evaluation,
    EvaluationConfig,
    ThresholdConfig,
    bootstrap_intervals,
    calibrated,
    choose_threshold,
    classification_metrics,
    count_macs,
    delong_test,
    evaluate_run,
    expected_calibration_error,
    fit_temperature,
    mcnemar_test,
    measure_efficiency,
    predict_logits,
    predict_probabilities,
    predict_run_logits,
    resampled_scalars,
)
from medkd.models import classifier_name, load_model

LABELS = np.array([0, 0, 0, 1, 1, 1])
POSITIVE = np.array([0.1, 0.4, 0.6, 0.3, 0.8, 0.9])


def binary(positive: np.ndarray) -> np.ndarray:
    return np.stack([1 - positive, positive], axis=1)


def test_binary_metrics_match_hand_counts():
    scores = classification_metrics(LABELS, binary(POSITIVE))  # argmax: TP 2, FN 1, TN 2, FP 1
    assert scores["confusion_matrix"] == [[2, 1], [1, 2]]
    for name in ("accuracy", "precision", "recall", "specificity", "f1", "balanced_accuracy"):
        assert scores[name] == pytest.approx(2 / 3), name
    assert scores["auc"] == pytest.approx(7 / 9)  # 7 of the 9 (positive, negative) pairs are ranked right
    lower = classification_metrics(LABELS, binary(POSITIVE), threshold=0.35)  # 0.4 and 0.6 now positive too
    assert lower["confusion_matrix"] == [[1, 2], [1, 2]]
    assert lower["specificity"] == pytest.approx(1 / 3) and lower["precision"] == pytest.approx(0.5)
    assert lower["auc"] == scores["auc"]  # ranking metrics do not depend on the threshold


def test_proper_scoring_rules_match_scikit_learn():
    metrics = classification_metrics(LABELS, binary(POSITIVE), 0.5)
    assert metrics["log_loss"] == pytest.approx(log_loss(LABELS, POSITIVE))
    assert metrics["brier"] == pytest.approx(2 * brier_score_loss(LABELS, POSITIVE))  # both classes' squared errors
    confident = classification_metrics(LABELS, binary(LABELS * 0.98 + 0.01))
    assert confident["log_loss"] < metrics["log_loss"] and confident["brier"] < metrics["brier"]
    three = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    assert classification_metrics(np.array([0, 1, 2]), three)["log_loss"] == pytest.approx(
        log_loss([0, 1, 2], three))


def test_inference_batches_fit_a_cpu_cache_and_fill_a_gpu():
    cpu = torch.device("cpu")
    assert inference_batch_size(cpu, (100, 1, 224, 224)) == 4 and inference_batch_size(cpu, (9, 3, 128, 128)) == 16
    assert inference_batch_size(cpu, (9, 1, 32, 32)) == 64 and inference_batch_size(cpu, (1, 1, 2048, 2048)) == 1
    assert inference_batch_size(torch.device("cuda"), (100, 1, 224, 224)) == 64
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten()).eval()
    images = np.random.default_rng(0).integers(0, 256, (37, 1, 224, 224), dtype=np.uint8)
    policy = predict_logits(model, images, mean=[0.5], std=[0.25])  # batches of 4, the last of 1
    np.testing.assert_allclose(policy, predict_logits(model, images, mean=[0.5], std=[0.25], batch_size=37), atol=1e-5)


def test_multiclass_metrics_are_macro_averages():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.eye(3)[[0, 1, 1, 1, 2, 0]] * 0.8 + 0.2 / 3
    scores = classification_metrics(labels, probabilities)
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["recall"] == pytest.approx(np.mean([0.5, 1.0, 0.5]))
    assert scores["specificity"] == pytest.approx(np.mean([3 / 4, 3 / 4, 1.0]))
    assert scores["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    with pytest.raises(ValueError, match="binary"):
        classification_metrics(labels, probabilities, threshold=0.5)


def test_ece_is_zero_for_calibrated_confident_predictions_and_large_for_overconfident_ones():
    labels = np.array([0, 1] * 50)
    assert classification_metrics(labels, np.eye(2)[labels])["ece"] == pytest.approx(0.0)
    assert classification_metrics(labels, np.eye(2)[1 - labels])["ece"] == pytest.approx(1.0)


def test_threshold_rules():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    positive = np.clip(rng.normal(0.3 + 0.3 * labels, 0.15), 0, 1)
    youden = choose_threshold(labels, positive, ThresholdConfig(rule="youden"))
    best = max(classification_metrics(labels, binary(positive), t, details=False)["balanced_accuracy"]
               for t in np.linspace(0, 1, 201))
    assert classification_metrics(labels, binary(positive), youden)["balanced_accuracy"] >= best - 1e-9
    sensitive = choose_threshold(labels, positive, ThresholdConfig(rule="sensitivity", target_sensitivity=0.98))
    assert classification_metrics(labels, binary(positive), sensitive)["recall"] >= 0.98
    assert sensitive < youden
    assert choose_threshold(labels, positive, ThresholdConfig(rule="fixed", value=0.7)) == 0.7
    imbalanced = np.r_[np.arange(100), np.arange(200, 400)]  # a third negatives: accuracy is not balanced accuracy
    accurate = choose_threshold(labels[imbalanced], positive[imbalanced], ThresholdConfig(rule="accuracy"))
    best = max(classification_metrics(labels[imbalanced], binary(positive[imbalanced]), t, details=False)["accuracy"]
               for t in [*np.unique(positive), 1.1])
    assert classification_metrics(labels[imbalanced], binary(positive[imbalanced]), accurate,
                                  details=False)["accuracy"] == pytest.approx(best)


def test_bootstrap_interval_holds_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 150)
    probabilities = binary(np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1))
    point = classification_metrics(labels, probabilities, 0.5, details=False)
    first = bootstrap_intervals(labels, probabilities, 0.5, resamples=200, confidence=0.95, seed=3)
    assert first == bootstrap_intervals(labels, probabilities, 0.5, resamples=200, confidence=0.95, seed=3)
    for name in ("accuracy", "auc", "recall", "specificity"):
        low, high = first[name]
        assert low < point[name] < high and high - low < 0.25, name


@pytest.mark.filterwarnings("ignore::UserWarning")  # scikit-learn on draws that lack a class
def test_every_bootstrap_draw_is_scored_as_classification_metrics_scores_it():
    """The draws are scored together as counts (each case counted as often as it was drawn): on each draw every
    metric equals classification_metrics on the drawn cases: binary scores with ties at a threshold and at argmax,
    six cases whose draws often lack a class (AUC NaN, balanced accuracy over the classes present), three classes,
    and a top probability of exactly 1 (ECE's bin of its own). A thousand draws of 624 cases take well under a
    second (one call per draw took about a minute)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    tied = binary(np.round(np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1), 1))  # tenths: many ties
    logits = rng.normal(size=(90, 3)) + 2 * np.eye(3)[labels3 := rng.integers(0, 3, 90)]
    cases = [(labels, tied, 0.5), (labels, tied, None),
             (np.array([0, 1, 1, 1, 1, 1]), binary(np.array([0.3, 0.6, 0.6, 0.9, 1.0, 0.2])), 0.5),
             (labels3, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), None)]
    undefined = 0
    for case_labels, probabilities, threshold in cases:
        n = len(case_labels)
        draws = [rng.integers(0, n, n) for _ in range(60)]
        scored = resampled_scalars(case_labels, probabilities, threshold,
                                   np.stack([np.bincount(draw, minlength=n) for draw in draws]))
        for row, draw in enumerate(draws):
            expected = classification_metrics(case_labels[draw], probabilities[draw], threshold, details=False)
            for name in SCALARS:
                if np.isnan(expected[name]):
                    undefined += 1
                    assert np.isnan(scored[name][row]), name
                else:
                    assert scored[name][row] == pytest.approx(expected[name], abs=1e-6), (name, threshold)
    assert undefined > 0  # the six cases' draws did lack a class

    labels = np.repeat([0, 1], 312)
    probabilities = binary(np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1))
    started = time.perf_counter()
    intervals = bootstrap_intervals(labels, probabilities, 0.5, resamples=1000, confidence=0.95, seed=0)
    assert time.perf_counter() - started < 5 and set(intervals) == set(SCALARS)


def test_the_bootstrap_draws_whole_patients_where_patients_are_known(trained_run):
    """A patient's images are not independent cases: 30 patients of 10 copies each of one image carry the
    information of 30 images. Drawn by patient, the intervals are as wide as the 30 images' own; drawn by image
    they would be about sqrt(10) times narrower. A run's evaluation resamples its test patients and says so."""
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1], 15)
    probabilities = binary(np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1))
    copies = 10
    many_labels, many_probabilities = np.repeat(labels, copies), np.repeat(probabilities, copies, axis=0)
    patients = np.repeat(np.arange(30), copies)
    settings = {"resamples": 2000, "confidence": 0.95, "seed": 0}
    own = bootstrap_intervals(labels, probabilities, 0.5, **settings)
    by_patient = bootstrap_intervals(many_labels, many_probabilities, 0.5, groups=patients, **settings)
    by_image = bootstrap_intervals(many_labels, many_probabilities, 0.5, **settings)
    for name in ("auc", "accuracy"):
        width = {key: high - low for key, (low, high) in (("own", own[name]), ("patient", by_patient[name]),
                                                           ("image", by_image[name]))}
        assert abs(width["patient"] - width["own"]) < 0.2 * width["own"], (name, width)
        assert width["image"] < 0.5 * width["patient"], (name, width)
    evaluation = evaluate_run(trained_run.folder, "test", settings=EvaluationConfig(bootstrap_resamples=50),
                              efficiency=False, show_progress=False)
    test = prepare(trained_run.config, show_progress=False).samples.query("split == 'test'")
    assert evaluation.resampled == f"{test['patient'].nunique()} patients" and evaluation.intervals


def test_saved_threshold_is_chosen_on_validation(trained_run):
    folder, config = trained_run
    model, card = load_model(folder)
    assert card.threshold_rule["rule"] == "youden"
    images, labels = prepare(config, show_progress=False).split("val")
    expected = choose_threshold(labels, predict_probabilities(model, images, card)[:, 1], ThresholdConfig())
    assert card.threshold == pytest.approx(expected)


def test_temperature_scaling_lowers_validation_ece_and_changes_no_ranking(tmp_path):
    """A model made overconfident on purpose (its head's weights x 40, against labels a quarter of which are
    flipped, so that it is right 3 times in 4 while sure every time) is calibrated back by one temperature
    fitted on those labels; the run's own card records its temperature and what it did on validation."""
    config = kermany_like_config(tmp_path, patients_per_class=20)
    settings = TrainConfig(model="compact_cnn", model_args={"width": 8}, epochs=6, batch_size=16,
                           optimiser={"lr": 3e-3}, runtime={"precision": "32"})
    folder = fit(config, settings, tmp_path / "run", show_progress=False)
    model, card = load_model(folder)
    images, labels = prepare(config, show_progress=False).split("val")
    record = card.calibration.model_dump()  # fitted at the end of training, on validation
    assert record["fitted_on"] == "val" and record["val_nll_after"] <= record["val_nll_before"] + 1e-6
    assert record["temperature"] == card.temperature
    head = model.get_submodule(classifier_name(model))
    with torch.no_grad():
        head.weight.mul_(40)
        head.bias.mul_(40)
    noisy = labels.copy()
    noisy[::4] = 1 - noisy[::4]
    logits = predict_run_logits(model, images, card)
    temperature = fit_temperature(logits, noisy, CalibrationConfig())
    before, after = (expected_calibration_error(noisy, calibrated(logits, t)) for t in (1.0, temperature))
    assert temperature > 2 and after < before / 2, (temperature, before, after)
    raw, scaled = calibrated(logits), calibrated(logits, temperature)
    assert (raw.argmax(1) == scaled.argmax(1)).all()  # no decision at argmax moves
    margin = (logits[:, 1] - logits[:, 0]).numpy()  # what ranks the images; the raw softmax saturates to 0 and 1
    assert classification_metrics(noisy, scaled)["auc"] == pytest.approx(roc_auc_score(noisy, margin))
    assert fit_temperature(logits, noisy, CalibrationConfig(method="none")) == 1.0


def test_evaluate_command_scores_the_test_split(trained_run, tmp_path):
    folder, config = trained_run
    result = CliRunner().invoke(app, ["evaluate", str(folder), "--split", "test", "--bootstrap", "50",
                                      "--json", str(tmp_path / "e.json"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "at val threshold" in result.output and "confusion matrix" in result.output and "MACs" in result.output
    saved = json.loads((folder / "evaluation" / "test.json").read_text())
    assert saved == json.loads((tmp_path / "e.json").read_text())
    typed = Evaluation.read(folder, "test")  # what every reader goes through
    assert typed.to_dict() == {**saved, "intervals": {k: tuple(v) for k, v in saved["intervals"].items()}}
    assert typed.resampled.endswith("patients") and typed.intervals["auc"][0] <= typed.at_threshold["auc"]
    test_images = (prepare(config, show_progress=False).samples["split"] == "test").sum()
    assert saved["images"] == test_images
    model, _ = load_model(folder)
    assert saved["efficiency"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert saved["at_threshold"]["auc"] > 0.9  # the generated classes are easy
    predictions = pd.read_csv(folder / "evaluation" / "test_predictions.csv")
    assert len(predictions) == test_images
    decided = (predictions["p_PNEUMONIA"] >= saved["threshold"]).astype(int)
    assert (decided == predictions["predicted"]).all()
    assert saved["at_threshold"]["accuracy"] == pytest.approx((predictions["predicted"] == predictions["label"]).mean())
    # the probabilities are calibrated; the raw softmax stays beside them, for the report's reliability "before"
    raw = predictions[["uncalibrated_p_NORMAL", "uncalibrated_p_PNEUMONIA"]].to_numpy()
    assert saved["calibration"]["ece_uncalibrated"] == pytest.approx(
        expected_calibration_error(predictions["label"].to_numpy(), raw))
    assert saved["calibration"]["ece"] == pytest.approx(saved["at_argmax"]["ece"])
    # the guard's verdict on each test image, from the same pass as the probabilities (features -> head)
    flagged = ~predictions["in_distribution"]
    assert (flagged == (predictions["ood_score"] > saved["ood"]["threshold"])).all()
    assert saved["ood"]["flagged"] == flagged.sum() and saved["ood"]["flagged_share"] == pytest.approx(flagged.mean())
    model, card = load_model(folder)
    images, _ = prepare(config, show_progress=False).split("test")
    np.testing.assert_allclose(predictions["p_PNEUMONIA"], predict_probabilities(model, images, card)[:, 1],
                               atol=1e-5)


def test_evaluate_rejects_unknown_split_and_non_run_folders(tmp_path):
    bad_split = CliRunner().invoke(app, ["evaluate", str(tmp_path), "--split", "holdout"])
    assert bad_split.exit_code == 2 and "train, val, test" in bad_split.output
    not_a_run = CliRunner().invoke(app, ["evaluate", str(tmp_path)])
    assert not_a_run.exit_code == 2 and "model.json is missing" in not_a_run.output


def test_delong_agrees_with_sklearn_auc_and_holds_its_size_under_the_null():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], [120, 80])
    signal = labels * 1.0
    better, worse = signal + rng.normal(0, 0.6, 200), signal + rng.normal(0, 1.5, 200)
    result = delong_test(labels, better, worse)
    assert result.statistic_a == pytest.approx(roc_auc_score(labels, better))
    assert result.statistic_b == pytest.approx(roc_auc_score(labels, worse))
    assert result.p_value < 0.01
    assert delong_test(labels, better, better).p_value == 1.0
    # two equally good models: about 5 % of tests reject at 0.05
    rejections = np.mean([delong_test(labels, signal + rng.normal(0, 1, 200), signal + rng.normal(0, 1, 200)).p_value
                          < 0.05 for _ in range(300)])
    assert 0.01 <= rejections <= 0.10


def test_mcnemar_counts_only_discordant_cases():
    labels = np.zeros(100, dtype=int)
    a = np.zeros(100, dtype=int)
    b = a.copy()
    b[:3] = 1  # b is wrong on 3 cases a gets right: too few to tell
    assert mcnemar_test(labels, a, b).p_value == pytest.approx(0.25)  # exact binomial: 2 * 0.5^3
    b[:20] = 1
    result = mcnemar_test(labels, a, b)
    assert result.statistic_a == 1.0 and result.statistic_b == 0.8 and result.p_value < 1e-4


def test_efficiency_counts_parameters_and_macs_and_times_the_model(tmp_path):
    from torch import nn

    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 8 * 8, 2, bias=False))
    assert count_macs(model, torch.zeros(1, 1, 8, 8)) == 4 * 9 * 64 + 256 * 2
    (tmp_path / "w.bin").write_bytes(b"x" * 1234)
    cost = measure_efficiency(model, (1, 8, 8), checkpoint=tmp_path / "w.bin", repeats=20, warmup=2, batch_size=8)
    assert cost.parameters == 4 * 9 + 256 * 2 and cost.checkpoint_bytes == 1234
    assert 0 < cost.latency_ms_median <= cost.latency_ms_p95 and cost.throughput_images_per_s > 0
