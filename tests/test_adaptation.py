"""How pretrained networks are adapted (issue 31): the epoch chosen on validation loss; WiSE-FT, a run derived
from an lp-ft run (medkd.derive), between its probe and its fine-tuned model."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from conftest import kermany_like_config
from medkd.config import ConfigError, load_recipe
from medkd.data import prepare
from medkd.derive import DeriveInputs, WiseFTError, derive_run
from medkd.derive.wise_ft import interpolated_state
from medkd.engine import TrainConfig, fit
from medkd.evaluation import EvaluationConfig, evaluate_run, predict_run_logits
from medkd.files import METRICS
from medkd.models import load_model, reestimate_batchnorm
from medkd.runner import run_study


def test_the_best_epoch_can_be_chosen_on_validation_loss(tmp_path):
    config = kermany_like_config(tmp_path, patients_per_class=8)
    settings = TrainConfig(model="compact_cnn", epochs=4, batch_size=8, select_on="val_loss",
                           optimiser={"lr": 3e-3}, augment=None)
    out = fit(config, settings, tmp_path / "run", show_progress=False)
    metrics = pd.read_csv(out / METRICS)
    best = metrics.loc[metrics["val_loss"].idxmin()]
    card = load_model(out)[1]
    assert card.selected_on == "val_loss"
    assert card.best_val_auc == pytest.approx(best["val_auc"])
    checkpoint = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["epoch"] == best["epoch"]


@pytest.fixture(scope="module")
def wise_study(tmp_path_factory):
    """A study of an lp-ft Lite0 stage (ImageNet weights, 32 px) and its WiSE-FT stage derived from it."""
    root = tmp_path_factory.mktemp("wise")
    config = kermany_like_config(root, patients_per_class=6)
    recipe = load_recipe(None, {
        "name": "wise", "data": config.model_dump(mode="json"),
        "train": {"model": "efficientnet_lite0", "weights": "imagenet", "epochs": 1, "batch_size": 8,
                  "optimiser": {"lr": 3e-3}, "guard": {"method": "none"}},
        "evaluation": {"bootstrap_resamples": 0},
        "stages": [{"name": "lpft", "train": {"transfer": {"name": "lp-ft", "probe": {"epochs": 3, "lr": 1e-2}}}},
                   {"name": "wise", "derive": {"name": "wise-ft", "alpha": 0.5}, "weights_from": "lpft"}],
        "comparisons": [["wise", "lpft"]]})
    out = root / "study"
    run_study(recipe, out, show_progress=False)
    return config, out


def test_wise_ft_interpolates_between_the_probe_and_the_fine_tuned_model(wise_study):
    config, study = wise_study
    lpft, out = study / "lpft" / "seed0", study / "wise" / "seed0"
    probe, _ = load_model(lpft / "probe")
    tuned, tuned_card = load_model(lpft)
    mixed, card = load_model(out)
    assert card.adaptation["method"] == "wise-ft" and card.adaptation["alpha"] == 0.5
    assert card.adaptation["batchnorm"] == "re-estimate" and card.adapted_from == str(lpft.resolve())
    assert card.threshold is not None and card.calibration.fitted_on == "val" and card.epochs_trained == 0
    name = "blocks.2.0.conv_pw.weight"
    expected = (probe.state_dict()[name] + tuned.state_dict()[name]) / 2
    torch.testing.assert_close(mixed.state_dict()[name], expected)
    assert (probe.state_dict()[name] - tuned.state_dict()[name]).abs().max() > 1e-4  # the ends differ

    # the re-estimated statistics are the training images' own, not a mixture of the ends'
    bn = "bn1.running_mean"
    assert not torch.allclose(mixed.state_dict()[bn], (probe.state_dict()[bn] + tuned.state_dict()[bn]) / 2)

    # nothing derived reads test: its one metrics row is validation's, the same model's
    data = prepare(config, show_progress=False)
    row = pd.read_csv(out / METRICS).iloc[0]
    val_images, val_labels = data.split("val")
    val_logits = predict_run_logits(mixed, val_images, card)
    assert row["val_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(
        val_logits, torch.as_tensor(val_labels))), abs=1e-5)

    # a derived run evaluates as any run does; the report tests it against the run it is derived from
    evaluation = evaluate_run(out, settings=EvaluationConfig(bootstrap_resamples=0), show_progress=False)
    report = (study / "report.md").read_text()
    assert "### wise-ft against the run it is derived from" in report and "**wise** vs **lpft**" in report
    assert "### Comparisons the recipe asks for" in report
    assert evaluation.threshold == card.threshold and evaluation.images == len(data.split("test")[1])


def test_batchnorm_statistics_are_measured_on_the_images(wise_study):
    model, card = load_model(wise_study[1] / "lpft" / "seed0")
    images = torch.randint(0, 256, (16, 1, 32, 32), dtype=torch.uint8)
    seen = {}
    model.bn1.register_forward_pre_hook(lambda module, args: seen.setdefault("input", args[0].detach().clone()))
    assert reestimate_batchnorm(model, images, card.normalisation, batch_size=16) > 10
    torch.testing.assert_close(model.bn1.running_mean, seen["input"].mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.bn1.running_var, seen["input"].var(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)
    assert not model.training


def test_comparisons_name_stages_of_the_recipe():
    with pytest.raises(ConfigError, match=r"comparisons: \['nope'\] are not stages"):
        load_recipe(None, {"data": {"path": "x"}, "stages": [{"name": "a"}], "comparisons": [["a", "nope"]]})


def test_wise_ft_needs_an_lp_ft_run_and_a_derived_stage_a_source(wise_study, tmp_path):
    config, study = wise_study
    probe = study / "lpft" / "seed0" / "probe"  # a linear run: it has no probe of its own
    with pytest.raises(WiseFTError, match="has no probe"):
        derive_run(probe, tmp_path / "wise", "wise-ft", DeriveInputs(lambda: prepare(config, show_progress=False)))
    lpft = study / "lpft" / "seed0"
    written = (lpft / METRICS).read_bytes()
    with pytest.raises(ValueError, match="the derived run needs its own folder"):
        derive_run(lpft, lpft, "wise-ft", DeriveInputs(lambda: prepare(config, show_progress=False)))
    assert (lpft / METRICS).read_bytes() == written  # refused before WiSE-FT wrote anything there
    start = {"w": torch.zeros(2), "n": torch.tensor(3)}
    mixed = interpolated_state(start, {"w": torch.ones(2), "n": torch.tensor(7)}, 0.25)
    assert mixed["w"].tolist() == [0.25, 0.25] and mixed["n"].item() == 7
    base = {"data": {"path": "x"}, "train": {"model": "compact_cnn"}}
    with pytest.raises(ConfigError, match="names its source stage in weights_from"):
        load_recipe(None, {**base, "stages": [{"name": "w", "derive": "wise-ft"}]})
    with pytest.raises(ConfigError, match="run it on a finished run with `medkd adapt`"):
        load_recipe(None, {**base, "stages": [{"name": "a"}, {"name": "b", "derive": "adabn", "weights_from": "a"}]})
    with pytest.raises(ConfigError, match="unknown derived-run method 'soup'"):
        load_recipe(None, {**base, "stages": [{"name": "a"}, {"name": "b", "derive": "soup", "weights_from": "a"}]})
    with pytest.raises(ConfigError, match="alpha"):
        load_recipe(None, {**base, "stages": [{"name": "a"}, {"name": "b", "weights_from": "a",
                                                              "derive": {"name": "wise-ft", "alpha": 2}}]})
