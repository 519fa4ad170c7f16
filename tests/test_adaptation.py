"""How pretrained networks are adapted (issue 31): the epoch chosen on validation loss, WiSE-FT along the path
between an lp-ft run's probe and its fine-tuned model."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from conftest import kermany_like_config
from medkd.config import ConfigError, load_recipe
from medkd.engine import TrainConfig, fit
from medkd.engine.wise_ft import WiseFTError, interpolated_state
from medkd.evaluation import EvaluationConfig, evaluate_run, predict_run_logits
from medkd.files import METRICS, WISE_FT_CURVE
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
    """A study of an lp-ft Lite0 stage (ImageNet weights, 32 px) and its WiSE-FT stage (weights_from it)."""
    root = tmp_path_factory.mktemp("wise")
    config = kermany_like_config(root, patients_per_class=6)
    recipe = load_recipe(None, {
        "name": "wise", "data": config.model_dump(mode="json"),
        "train": {"model": "efficientnet_lite0", "weights": "imagenet", "epochs": 1, "batch_size": 8,
                  "optimiser": {"lr": 3e-3}, "probe": {"epochs": 3, "lr": 1e-2}, "guard": {"method": "none"}},
        "evaluation": {"bootstrap_resamples": 0},
        "stages": [{"name": "lpft", "train": {"transfer": "lp-ft"}},
                   {"name": "wise", "train": {"transfer": "wise-ft", "wise_ft": {"alpha": 0.5, "curve": [0, 0.5, 1]}},
                    "weights_from": "lpft"}],
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
    assert card.transfer == "wise-ft" and card.wise_ft.alpha == 0.5 and card.wise_ft.batchnorm == "re-estimate"
    assert card.threshold is not None and card.calibration.fitted_on == "val" and card.epochs_trained == 0
    name = "blocks.2.0.conv_pw.weight"
    expected = (probe.state_dict()[name] + tuned.state_dict()[name]) / 2
    torch.testing.assert_close(mixed.state_dict()[name], expected)
    assert (probe.state_dict()[name] - tuned.state_dict()[name]).abs().max() > 1e-4  # the ends differ

    # the re-estimated statistics are the training images' own, not a mixture of the ends'
    bn = "bn1.running_mean"
    assert not torch.allclose(mixed.state_dict()[bn], (probe.state_dict()[bn] + tuned.state_dict()[bn]) / 2)

    # the curve: both batch-norm modes at every alpha on val and test; its ends without re-estimation are the
    # probe and the fine-tuned model themselves
    curve = pd.read_csv(out / WISE_FT_CURVE)
    assert len(curve) == 3 * 2 * 2 and set(curve["split"]) == {"val", "test"}
    from medkd.data import prepare

    data = prepare(config, show_progress=False)
    images, labels = data.split("test")
    for alpha, model in ((0.0, probe), (1.0, tuned)):
        logits = predict_run_logits(model, images, tuned_card)
        row = curve[(curve.alpha == alpha) & (curve.batchnorm == "interpolate") & (curve.split == "test")].iloc[0]
        loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(labels))
        assert row["log_loss"] == pytest.approx(float(loss), abs=1e-5)

    # a wise-ft run evaluates as any run does; the report tests it against its fine-tuned run and shows the path
    evaluation = evaluate_run(out, settings=EvaluationConfig(bootstrap_resamples=0), show_progress=False)
    report = (study / "report.md").read_text()
    assert "**wise** vs **lpft**" in report and "WiSE-FT path of wise (study only)" in report
    assert "### Comparisons the recipe asks for" in report
    mixed_logits = predict_run_logits(mixed, images, card)
    assert evaluation.threshold == card.threshold and evaluation.images == len(labels)
    row = curve[(curve.alpha == 0.5) & (curve.batchnorm == "re-estimate") & (curve.split == "test")].iloc[0]
    assert evaluation.at_argmax["auc"] == pytest.approx(row["auc"], abs=1e-6)  # the saved model is the curve's
    assert float(torch.nn.functional.cross_entropy(mixed_logits, torch.as_tensor(labels))) == pytest.approx(
        row["log_loss"], abs=1e-5)


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


def test_wise_ft_needs_an_lp_ft_run(wise_study, tmp_path):
    config, study = wise_study
    lpft = study / "lpft" / "seed0"
    with pytest.raises(ValidationError, match="wise-ft interpolates a finished lp-ft run"):
        TrainConfig(model="efficientnet_lite0", weights="imagenet", transfer="wise-ft")
    not_lpft = TrainConfig(model="efficientnet_lite0", transfer="wise-ft",
                           weights=str(lpft / "probe" / "model.safetensors"))
    with pytest.raises(WiseFTError, match="is a linear run"):
        fit(config, not_lpft, tmp_path / "wise", show_progress=False)
    start = {"w": torch.zeros(2), "n": torch.tensor(3)}
    mixed = interpolated_state(start, {"w": torch.ones(2), "n": torch.tensor(7)}, 0.25)
    assert mixed["w"].tolist() == [0.25, 0.25] and mixed["n"].item() == 7


def test_a_probes_weight_decay_is_chosen_on_validation_and_kept(tmp_path):
    """probe_search: one head per weight decay on the frozen ImageNet Lite0's cached features, each at the epoch
    its run kept on validation AUC; the one with the lowest validation loss is kept, the run folder's model is that
    candidate trained again, a strong decay shrinks the head, finished candidates are not trained again, and an
    lp-ft probe searches too."""
    config = kermany_like_config(tmp_path, patients_per_class=8)
    settings = TrainConfig(model="efficientnet_lite0", weights="imagenet", transfer="linear", epochs=4, batch_size=16,
                           guard={"method": "none"},
                           probe_search={"weight_decay": [1e-4, 100.0]})
    out = fit(config, settings, tmp_path / "run", show_progress=False)
    scores = pd.read_csv(out / "probe_search.csv")
    assert list(scores["weight_decay"]) == [1e-4, 100.0] and scores["chosen"].sum() == 1
    chosen = scores.loc[scores["val_loss"].idxmin()]
    assert bool(chosen["chosen"])
    model, card = load_model(out)
    assert card.probe_search.weight_decay == chosen["weight_decay"] and card.probe_search.selected_on == "val_loss"
    assert card.probe_search.scores == pytest.approx({"0.0001": scores["val_loss"][0], "100": scores["val_loss"][1]})
    for row in scores.itertuples():  # each candidate scored at the epoch its own run kept (on validation AUC)
        epochs = pd.read_csv(out / "probe_search" / f"weight_decay_{row.weight_decay:g}" / METRICS)
        assert row.epoch == epochs.loc[epochs["val_auc"].idxmax(), "epoch"]
    heads = {wd: load_model(out / "probe_search" / f"weight_decay_{wd:g}")[0].classifier.weight for wd in (1e-4, 100.0)}
    assert heads[100.0].norm() < 0.9 * heads[1e-4].norm()  # the decay is applied
    torch.testing.assert_close(model.classifier.weight, heads[chosen["weight_decay"]])
    finished = (out / "probe_search" / "weight_decay_100" / "model.safetensors").stat().st_mtime_ns
    fit(config, settings, out, show_progress=False)
    assert (out / "probe_search" / "weight_decay_100" / "model.safetensors").stat().st_mtime_ns == finished
    with pytest.raises(ValidationError, match="probe_search chooses a linear probe's weight decay"):
        TrainConfig(transfer="finetune", probe_search={"weight_decay": [0.0, 1.0]})
    with pytest.raises(ValidationError, match="distinct values"):
        TrainConfig(transfer="linear", probe_search={"weight_decay": [1.0, 1.0]})
    short_probe = settings.probe.model_copy(update={"epochs": 2})
    lpft = fit(config, settings.model_copy(update={"transfer": "lp-ft", "epochs": 1, "probe": short_probe}),
               tmp_path / "lpft", show_progress=False)
    assert pd.read_csv(lpft / "probe" / "probe_search.csv")["chosen"].sum() == 1
    assert load_model(lpft / "probe")[1].probe_search is not None
