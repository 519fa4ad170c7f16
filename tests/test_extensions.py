"""Each extension point costs one registration, made here from outside the package: a model (with its stem and
head), a weight set by tag, a data source with its own settings, a logit loss, a feature loss, a transfer mode and a
derived-run method. Runs that use them train (or are derived), and their run cards say so."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from conftest import class_image
from medkd.config import ConfigError, load_recipe
from medkd.data import ArrayReader, DataConfig, SampleTable, prepare, register_source
from medkd.data.sources import AUTO
from medkd.derive import DerivedRunMethod, DeriveSettings
from medkd.distillation import (
    FEATURE_LOSSES,
    LOGIT_LOSSES,
    DistillConfig,
    FeatureLoss,
    LogitLoss,
    distill,
    register_feature_loss,
    register_logit_loss,
)
from medkd.engine import TrainConfig, TransferMode, TransferSettings, fit
from medkd.models import (
    CheckpointFile,
    PretrainedConfig,
    RunCard,
    classifier_name,
    create_model,
    register_model,
    register_weights,
    weight_tags,
)
from medkd.settings import StrictModel

SIDE = 32


class BandSettings(StrictModel):
    images_per_class: int = 40
    band_level: int = 200


def load_bands(config: DataConfig, path: str, settings: BandSettings) -> SampleTable:
    """Generated grey images (32 x 32) whose class is a band's position: a source with settings of its own."""
    n = settings.images_per_class
    splits = {"train": np.repeat([0, 1], n), "test": np.repeat([0, 1], n // 4)}
    images = {split: np.stack([class_image(label, seed + 1000 * (split == "test"), SIDE, settings.band_level)
                               for seed, label in enumerate(labels)]) for split, labels in splits.items()}
    frame = pd.concat([pd.DataFrame({"ref": [f"{split}/{i}" for i in range(len(labels))], "label": labels,
                                     "source_split": split, "patient": [f"{split}-{i}" for i in range(len(labels))]})
                       for split, labels in splits.items()])
    return SampleTable(frame, ["absent", "present"], ArrayReader(images, []), origin="bands", patients_known=True)


def tiny_cnn(num_classes: int, in_chans: int = 3, width: int = 8) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))


class HalfKD(LogitLoss):
    def per_sample(self, student, teacher, labels):
        return 0.5 * (student.softmax(1) - teacher.softmax(1)).pow(2).sum(1)


class MeanMatch(FeatureLoss):
    """The two maps' channel-mean activations compared: no parameters."""

    def forward(self, student, teacher):
        return (student.mean(dim=(1, 2, 3)) - teacher.mean(dim=(1, 2, 3))).pow(2).mean()


@pytest.fixture
def registered(tmp_path):
    """Every extension registered for one test, and removed after it."""
    from medkd.data.sources import _REGISTRY as SOURCES  # the test undoes its registration
    from medkd.models.registry import _REGISTERED as MODELS
    from medkd.models.registry import _WEIGHT_SETS as WEIGHT_SETS

    register_source("test_bands", detect=lambda path: path == "bands:", detect_order=1,
                    settings=BandSettings)(load_bands)
    register_model("test_tiny_cnn", stem="0", classifier="6")(tiny_cnn)
    checkpoint = tmp_path / "tiny.safetensors"
    torch.manual_seed(7)
    save_file({k: v.contiguous() for k, v in tiny_cnn(10, 3).state_dict().items()}, checkpoint)
    register_weights("test_tiny_cnn", "test_set", PretrainedConfig(providers=(CheckpointFile(str(checkpoint)),),
                                                                   mean=(0.3, 0.3, 0.3), std=(0.2, 0.2, 0.2),
                                                                   input_size=SIDE, num_classes=10))
    register_logit_loss("test_half_kd")(HalfKD)
    register_feature_loss("test_mean_match")(MeanMatch)
    yield checkpoint
    for registry, key in ((SOURCES, "test_bands"), (MODELS, "test_tiny_cnn"), (WEIGHT_SETS, "test_tiny_cnn"),
                          (LOGIT_LOSSES, "test_half_kd"), (FEATURE_LOSSES, "test_mean_match")):
        registry.pop(key, None)


def test_registered_extensions_train_end_to_end(registered, tmp_path):
    data = DataConfig.model_validate({"path": "bands:", "source": AUTO, "source_settings": {"images_per_class": 30},
                                      "cache_dir": str(tmp_path / "cache"),
                                      "preprocessing": {"channels": 1}, "split": {"min_val_size": 1}})
    assert len(prepare(data, show_progress=False).samples) == 60 + 14  # the source's own setting reached it
    model = create_model("test_tiny_cnn", num_classes=2, in_chans=1, weights="test_set")
    assert weight_tags("test_tiny_cnn") == ["test_set"] and model.medkd_weights_source.startswith("file:")
    assert classifier_name(model) == "6" and model[0].in_channels == 1  # the declared head replaced, stem folded
    teacher = fit(data, TrainConfig(model="test_tiny_cnn", weights="test_set", epochs=2, batch_size=16, augment=None),
                  tmp_path / "teacher", show_progress=False)
    card = RunCard.read(teacher)
    assert card.weights == "test_set" and card.pretrained.source == f"file:{registered.resolve()}"
    assert card.normalisation.mean == [pytest.approx(0.3)]  # the weight set's own statistics, folded to grey
    student = distill(data, TrainConfig(model="test_tiny_cnn", model_args={"width": 4}, epochs=2, batch_size=16,
                                        augment=None),
                      DistillConfig(teachers=[str(teacher)], loss="test_half_kd", teacher_outputs="online",
                                    hint={"student_layer": "2", "teacher_layer": "2", "loss": "test_mean_match"}),
                      tmp_path / "student", show_progress=False)
    card = RunCard.read(student)
    assert card.distillation.loss == "test_half_kd" and card.model_args == {"width": 4}
    import csv

    with open(student / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert all(float(row["train_kd_loss"]) > 0 and float(row["train_hint_loss"]) >= 0 for row in rows)


def test_model_weights_and_model_args_are_checked_when_the_recipe_is_read(registered):
    base = {"data": {"path": "x"}}
    for train, message in (({"model": "test_tiny_cn"}, "unknown model 'test_tiny_cn'"),
                           ({"model": "test_tiny_cnn", "weights": "imagenet"},
                            r"no such weight set \(its sets: test_set\)"),
                           ({"model": "test_tiny_cnn", "model_args": {"depth": 3}}, r"\['depth'\].*takes \['width'\]"),
                           ({"model": "compact_cnn", "weights": "imagnet"}, "no such weight set")):
        with pytest.raises(ConfigError, match=message):
            load_recipe(None, {**base, "train": train})
    with pytest.raises(ConfigError, match=r"(?s)stages\.student\.train.*unknown model"):
        load_recipe(None, {**base, "stages": [{"name": "student", "train": {"model": "nope"}}]})
    with pytest.raises(ConfigError, match="images_per_clas.*takes images_per_class, band_level"):
        load_recipe(None, {"data": {"path": "bands:", "source": "test_bands",
                                    "source_settings": {"images_per_clas": 3}}})
    with pytest.raises(ConfigError, match="unknown feature loss 'mean_match'"):
        load_recipe(None, {**base, "distill": {"teachers": ["t"], "teacher_outputs": "online", "hint": {
            "student_layer": "a", "teacher_layer": "b", "loss": "mean_match"}}})
    recipe = load_recipe(None, {**base, "train": {"model": "test_tiny_cnn", "weights": "runs/x/model.safetensors"}})
    assert recipe.train.weights == "runs/x/model.safetensors"  # a path: its file is looked for when the run starts


class FrozenLayerSettings(TransferSettings):
    name: Literal["test_frozen_layer"] = "test_frozen_layer"
    layer: str = "0"


class FrozenLayer(TransferMode):
    """A transfer mode of its own: one named layer kept as it started, every other one trained."""

    Settings = FrozenLayerSettings
    settings: FrozenLayerSettings

    def trained_part(self, model, data, splits, *, mean, std, placement):
        model.get_submodule(self.settings.layer).requires_grad_(False)
        return model


class HeadScaleSettings(DeriveSettings):
    name: Literal["test_head_scale"] = "test_head_scale"
    factor: float = 2.0


class HeadScale(DerivedRunMethod):
    """A derived-run method of its own: the classifier's weights and bias multiplied by `factor`."""

    Settings = HeadScaleSettings
    settings: HeadScaleSettings

    def derive(self, source, inputs, out):
        from medkd.models import load_model

        model, card = load_model(source)
        head = model.get_submodule(classifier_name(model))
        with torch.no_grad():
            head.weight *= self.settings.factor
            head.bias *= self.settings.factor
        return model, card, {"factor": self.settings.factor}


def test_a_transfer_mode_and_a_derived_run_method_registered_from_outside(registered, tmp_path):
    from medkd.derive import DERIVED_RUNS, DeriveInputs, derive_run, register_derived_run
    from medkd.engine import TRANSFER_MODES, register_transfer
    from medkd.evaluation import predict_run_logits
    from medkd.models import load_model

    register_transfer("test_frozen_layer")(FrozenLayer)
    register_derived_run("test_head_scale")(HeadScale)
    try:
        data = DataConfig.model_validate({"path": "bands:", "source": "test_bands", "cache_dir": str(tmp_path / "c"),
                                          "preprocessing": {"channels": 1}, "split": {"min_val_size": 1}})
        settings = TrainConfig(model="test_tiny_cnn", weights="test_set", epochs=2, batch_size=16, augment=None,
                               transfer={"name": "test_frozen_layer", "layer": "0"}, optimiser={"lr": 1e-2})
        run = fit(data, settings, tmp_path / "run", show_progress=False)
        model, card = load_model(run)
        start = create_model("test_tiny_cnn", num_classes=2, in_chans=1, weights="test_set")
        assert card.transfer == "test_frozen_layer"
        torch.testing.assert_close(model[0].weight, start[0].weight)  # the mode's frozen layer
        assert (model[2].weight - start[2].weight).abs().max() > 1e-4  # the others trained
        with pytest.raises(ConfigError, match=r"(?s)stages\.s\.train.*transfer\.layers: unknown key"):
            load_recipe(None, {"data": {"path": "x"}, "stages": [{"name": "s", "train": {
                "model": "test_tiny_cnn", "transfer": {"name": "test_frozen_layer", "layers": "0"}}}]})

        derived, record = derive_run(run, tmp_path / "scaled", {"name": "test_head_scale", "factor": 3.0},
                                     DeriveInputs(lambda: prepare(data, show_progress=False)))
        scaled, scaled_card = load_model(derived)
        images = prepare(data, show_progress=False).split("val")[0]
        torch.testing.assert_close(predict_run_logits(scaled, images, scaled_card),
                                   3.0 * predict_run_logits(model, images, card), atol=1e-4, rtol=1e-4)
        assert scaled_card.adaptation == record == {"method": "test_head_scale", "factor": 3.0}
        assert scaled_card.adapted_from == str(run.resolve())
        recipe = load_recipe(None, {"data": {"path": "x"}, "train": {"model": "test_tiny_cnn"}, "stages": [
            {"name": "a"}, {"name": "b", "weights_from": "a", "derive": {"name": "test_head_scale", "factor": 2}}]})
        assert recipe.stages[1].derive.factor == 2.0
    finally:
        TRANSFER_MODES.pop("test_frozen_layer", None)
        DERIVED_RUNS.pop("test_head_scale", None)
