"""A trained model at a new site: `medkd calibrate`, `medkd adapt` (AdaBN) and the site-calibration protocol."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from conftest import tiny_recipe, write_kermany_like
from medkd.cli import app
from medkd.config import load_recipe
from medkd.data import DataConfig, labelled_images, prepare
from medkd.derive import estimate_site_prior, reweighted
from medkd.evaluation import (
    CalibrationConfig,
    ThresholdConfig,
    calibrated,
    choose_threshold,
    fit_temperature,
    predict_run_logits,
)
from medkd.files import RUN_CARD, SITE_STUDY
from medkd.models import load_model, normalise
from medkd.runner import run_study
from medkd.site import CEILING, PRIOR_SHIFT, VARIANTS, site_images, site_parts


def test_calibrate_fits_a_site_temperature_and_threshold_into_a_new_run(trained_run, tmp_path):
    site = write_kermany_like(tmp_path / "site", {"train": 3}, patients_per_class=8)  # no split folders: all used
    original = (trained_run.folder / RUN_CARD).read_bytes()
    result = CliRunner().invoke(app, ["calibrate", str(trained_run.folder), "--data", str(site),
                                      "--out", str(tmp_path / "calibrated"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (trained_run.folder / RUN_CARD).read_bytes() == original  # the trained run is never changed
    model, card = load_model(tmp_path / "calibrated")
    record = card.calibration.model_dump()
    assert record["fitted_on"] == "site" and record["site"]["images"] == 48 and record["site"]["path"] == str(site)
    assert card.validation_calibration.model_dump() == json.loads(original)["calibration"]
    # the same temperature and threshold, computed here from the site's images
    images, labels, _ = labelled_images(DataConfig(path=str(site), preprocessing=trained_run.config.preprocessing),
                                        show_progress=False)
    logits = predict_run_logits(model, images, card)
    temperature = fit_temperature(logits, labels, CalibrationConfig())
    assert record["temperature"] == pytest.approx(temperature, rel=1e-4)
    expected = choose_threshold(labels, calibrated(logits, temperature)[:, 1], ThresholdConfig())
    assert card.threshold == pytest.approx(expected, rel=1e-4)
    assert "calibrated on 48 site images" in result.output

    wrong = write_kermany_like(tmp_path / "other", {"train": 2}, patients_per_class=2)  # few patients: no split needed
    (wrong / "train" / "NORMAL").rename(wrong / "train" / "HEALTHY")
    refused = CliRunner().invoke(app, ["calibrate", str(trained_run.folder), "--data", str(wrong),
                                       "--out", str(tmp_path / "c2"), "--no-progress"])
    assert refused.exit_code == 2 and "needs the same class folders" in refused.output


def test_adapt_sets_batch_norm_statistics_to_the_site_images(trained_run, tmp_path):
    site = tmp_path / "site_images"  # unlabelled: a flat folder of brighter X-rays
    site.mkdir()
    for index, file in enumerate(sorted((Path(trained_run.config.path) / "test").rglob("*.jpeg"))[:40]):
        brighter = np.clip(np.asarray(Image.open(file)).astype(int) + 40, 0, 255).astype(np.uint8)
        Image.fromarray(brighter).save(site / f"{index}.png")
    original = (trained_run.folder / RUN_CARD).read_bytes()
    result = CliRunner().invoke(app, ["adapt", str(trained_run.folder), str(site), "--out", str(tmp_path / "adapted")])
    assert result.exit_code == 0, result.output
    assert (trained_run.folder / RUN_CARD).read_bytes() == original
    adapted, card = load_model(tmp_path / "adapted")
    assert card.adaptation["images"] == 40 and card.adaptation["method"] == "adabn"
    # the first batch-norm layer's running mean is now the mean of its input over the site's images
    images, _ = site_images([site], trained_run.config.preprocessing)
    first = next(m for m in adapted.modules() if isinstance(m, nn.BatchNorm2d))
    seen = []
    handle = first.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    norm = card.normalisation
    with torch.no_grad():
        adapted(normalise(images, norm.mean, norm.std))
    handle.remove()
    torch.testing.assert_close(first.running_mean, seen[0].mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    before, _ = load_model(trained_run.folder)
    assert not torch.allclose(next(m for m in before.modules() if isinstance(m, nn.BatchNorm2d)).running_mean,
                              first.running_mean)


def test_site_study_scores_every_variant_on_patients_it_did_not_calibrate_on(tmp_path):
    out = tmp_path / "study"
    recipe = load_recipe(tiny_recipe(tmp_path))
    run_study(recipe, out, stages=["control", "teacher"], show_progress=False)
    result = CliRunner().invoke(app, ["site-study", str(out), "--stage", "control", "--splits", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / SITE_STUDY / "site_study.csv")
    assert list(table["variant"].unique()) == [*VARIANTS, CEILING] and len(table) == 2 * (len(VARIANTS) + 1)
    markdown = (out / SITE_STUDY / "site_study.md").read_text()
    assert markdown.startswith("# Site-calibration protocol") and "Not the main results" in markdown
    # the parts: whole patients, disjoint, a quarter of the test patients calibrating
    data = prepare(recipe.data, show_progress=False)
    test = data.samples[data.samples["split"] == "test"].reset_index(drop=True)
    for seed in (0, 1):
        calibration, evaluation = site_parts(data, 0.25, seed)
        assert set(test.loc[calibration, "patient"]).isdisjoint(test.loc[evaluation, "patient"])
        assert len(calibration) + len(evaluation) == len(test) and 0.15 < len(calibration) / len(test) < 0.35
    # "as trained" is the run's own test evaluation restricted to the evaluation part
    predictions = pd.read_csv(out / "control" / "seed0" / "evaluation" / "test_predictions.csv")
    _, evaluation = site_parts(data, 0.25, 0)
    expected = (predictions.loc[evaluation, "predicted"] == predictions.loc[evaluation, "label"]).mean()
    row = table[(table["split_seed"] == 0) & (table["variant"] == "as trained")].iloc[0]
    assert row["accuracy"] == pytest.approx(expected) and row["evaluation_images"] == len(evaluation)
    # the ceiling: the best accuracy of any threshold on the evaluation part, above every variant's
    positive = predictions.loc[evaluation, "p_PNEUMONIA"].to_numpy()
    labels = predictions.loc[evaluation, "label"].to_numpy()
    best = max(((positive >= t) == (labels == 1)).mean() for t in [*np.unique(positive), 1.1])
    split0 = table[table["split_seed"] == 0].set_index("variant")["accuracy"]
    thresholds_only = split0[["as trained", "site threshold", "site temperature + threshold"]]
    assert split0[CEILING] == pytest.approx(best) and (thresholds_only <= best + 1e-9).all()
    # the prior shift: the class mix estimated on the calibration part without its labels, reported beside the
    # evaluation part's actual share
    shift = table[table["variant"] == PRIOR_SHIFT]
    assert shift["estimated_prior"].between(0, 1).all() and shift["evaluation_prior"].between(0.3, 0.7).all()
    assert "estimated by EM on the calibration part (no labels)" in markdown
    unknown = CliRunner().invoke(app, ["site-study", str(out), "--stage", "student_kd", "--no-progress"])
    assert unknown.exit_code == 2 and "student_kd: no finished run" in unknown.output


def test_prior_shift_em_recovers_a_sites_class_mix_from_calibrated_probabilities():
    """Saerens et al.'s setting: a calibrated model trained at 74 % positives meets a site at 40 %; EM on its
    probabilities alone (no labels) finds the site's share, and the re-weighted probabilities are the site's
    posteriors (their calibration there is restored)."""
    rng = np.random.default_rng(0)
    train_prior, site_share = np.array([0.26, 0.74]), 0.40
    labels = (rng.random(20_000) < site_share).astype(int)
    scores = rng.normal(np.where(labels == 1, 1.0, -1.0), 1.0)  # two Gaussians, unit variance
    # the posterior under the training prior, exactly: a calibrated model trained at 74 %
    odds = np.exp(2 * scores) * train_prior[1] / train_prior[0]
    probabilities = np.stack([1 / (1 + odds), odds / (1 + odds)], axis=1)
    estimate = estimate_site_prior(probabilities, train_prior)
    assert estimate.converged and abs(estimate.site_prior[1] - labels.mean()) < 0.01  # the sample's own share
    site_posteriors = reweighted(probabilities, train_prior, estimate.site_prior)
    assert abs(site_posteriors[:, 1].mean() - labels.mean()) < 0.01  # calibrated at the site again
    assert abs(probabilities[:, 1].mean() - labels.mean()) > 0.15  # as trained, it was not
    with pytest.raises(ValueError, match="empty class"):
        estimate_site_prior(probabilities, np.array([0.0, 1.0]))


def test_adapt_prior_shift_reweights_to_the_site_class_mix_and_keeps_the_threshold(trained_run, tmp_path):
    """EM on the site's unlabelled images (24 NORMAL, 6 PNEUMONIA) re-estimates the class mix (how well depends on
    the model's calibration: EM itself is tested on known probabilities above); the adapted run's probabilities are
    the original's re-weighted by site / training prior (medkd.derive.reweighted), through every consumer of the
    model, since the ratio sits in the classifier's bias."""
    test = Path(trained_run.config.path) / "test"
    site = tmp_path / "site"
    site.mkdir()
    chosen = sorted((test / "NORMAL").glob("*.jpeg"))[:24] + sorted((test / "PNEUMONIA").glob("*.jpeg"))[:6]
    for index, file in enumerate(chosen):
        Image.open(file).save(site / f"{index}.png")
    result = CliRunner().invoke(app, ["adapt", str(trained_run.folder), str(site), "--out", str(tmp_path / "shifted"),
                                      "--method", "prior-shift", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "PNEUMONIA" in result.output and "the validation threshold is kept" in result.output
    original, card = load_model(trained_run.folder)
    shifted, shifted_card = load_model(tmp_path / "shifted")
    record = shifted_card.adaptation
    assert record["method"] == "prior-shift" and record["images"] == 30 and record["em_converged"]
    data = prepare(trained_run.config, show_progress=False)
    train_labels = data.samples.loc[data.samples["split"] == "train", "label"].to_numpy()
    assert record["train_prior"][1] == pytest.approx(train_labels.mean(), abs=1e-6)
    assert shifted_card.threshold == card.threshold and shifted_card.temperature == card.temperature
    images, _ = site_images([site], card.preprocessing)
    before = calibrated(predict_run_logits(original, images, card), card.temperature)
    estimate = estimate_site_prior(before, np.array(record["train_prior"]))
    np.testing.assert_allclose(record["site_prior"], estimate.site_prior, atol=1e-5)
    after = calibrated(predict_run_logits(shifted, images, shifted_card), shifted_card.temperature)
    expected = reweighted(before, np.array(record["train_prior"]), np.array(record["site_prior"]))
    np.testing.assert_allclose(after, expected, atol=1e-5)
    refused = CliRunner().invoke(app, ["adapt", str(trained_run.folder), str(site), "--out", str(tmp_path / "x"),
                                       "--method", "tent"])
    assert refused.exit_code == 2 and "use one of adabn, prior-shift" in refused.output
