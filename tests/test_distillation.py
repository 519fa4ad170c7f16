"""Knowledge distillation: loss properties, a frozen teacher, cached vs online targets, and real teaching."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from medkd.cli import app
from medkd.config import ConfigError, load_recipe
from medkd.data import DataConfig, prepare
from medkd.distillation import (
    LOGIT_LOSSES,
    Distillation,
    DistillationError,
    DistillConfig,
    LogitLoss,
    build_logit_loss,
    distill,
    ensemble_logits,
    load_teachers,
    register_logit_loss,
)
from medkd.distillation.losses import decoupled_parts, soft_kl, standardise
from medkd.engine import TrainConfig, fit
from medkd.engine.datamodule import TensorDataModule, split_tensors
from medkd.evaluation import predict_logits
from medkd.models import Normalisation, create_model, load_model, normalisation
from medkd.settings import StrictModel


def settings(**changes) -> DistillConfig:
    return DistillConfig.model_validate({"teachers": ["unused"], **changes})


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_loss_is_zero_when_the_student_matches_the_teacher(name):
    torch.manual_seed(0)  # its own draws, whatever ran before
    logits = torch.randn(16, 5)
    labels = torch.randint(0, 5, (16,))
    loss = build_logit_loss(name, 4.0, {})
    # float32 rounding: DIST's 1 - Pearson correlation of a vector with itself is a few 1e-7, times T^2
    assert loss(logits, logits.clone(), labels).item() == pytest.approx(0, abs=1e-5)
    assert loss(torch.randn(16, 5), logits, labels).item() > 0.01


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_weighted_loss_is_the_weighted_mean_of_the_samples_losses(name):
    student, teacher = torch.randn(12, 3), torch.randn(12, 3)
    labels = torch.tensor([0, 1, 2] * 4)
    loss = build_logit_loss(name, 2.0, {})
    each = loss.per_sample(student, teacher, labels)
    assert each.shape == (12,) and loss(student, teacher, labels).item() == pytest.approx(each.mean().item())
    only_class_1 = torch.tensor([0.0, 1.0, 0.0])  # class weights
    assert loss(student, teacher, labels, only_class_1).item() == pytest.approx(each[labels == 1].mean().item())
    doubled = torch.tensor([1.0, 2.0, 1.0])
    expected = (each[labels != 1].sum() + 2 * each[labels == 1].sum()) / 16
    assert loss(student, teacher, labels, doubled).item() == pytest.approx(expected.item())


def test_kd_is_t_squared_times_the_softened_kl():
    student, teacher = torch.randn(8, 3), torch.randn(8, 3)
    for temperature in (1.0, 4.0):
        expected = F.kl_div(F.log_softmax(student / temperature, 1), F.softmax(teacher / temperature, 1),
                            reduction="batchmean") * temperature**2
        got = build_logit_loss("kd", temperature, {})(student, teacher, None)
        assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_t_squared_keeps_gradient_size_independent_of_temperature():
    teacher = torch.randn(64, 4) * 0.5
    norms = []
    for temperature in (4.0, 16.0):
        student = (torch.randn(64, 4, generator=torch.Generator().manual_seed(0)) * 0.5).requires_grad_()
        build_logit_loss("kd", temperature, {})(student, teacher, None).backward()
        norms.append(student.grad.norm().item())
    assert norms[0] == pytest.approx(norms[1], rel=0.1)  # without T^2 they would differ 16-fold


def test_dkd_decomposes_kd_into_its_parts():
    student, teacher = torch.randn(32, 6), torch.randn(32, 6)
    labels = torch.randint(0, 6, (32,))
    tckd, nckd, non_target_mass = decoupled_parts(student, teacher, labels, 2.0)
    assert torch.allclose(soft_kl(student, teacher, 2.0), tckd + non_target_mass * nckd, atol=1e-5)
    only_target = build_logit_loss("dkd", 2.0, {"nckd_weight": 0})(student, teacher, labels)
    assert only_target.item() == pytest.approx(4 * tckd.mean().item(), rel=1e-5)
    only_rest = build_logit_loss("dkd", 2.0, {"tckd_weight": 0, "nckd_weight": 1})(student, teacher, labels)
    assert only_rest.item() == pytest.approx(4 * nckd.mean().item(), rel=1e-5)


def test_lskd_ignores_the_scale_and_shift_of_logits():
    student, teacher = torch.randn(8, 4), torch.randn(8, 4)
    base = build_logit_loss("lskd", 4.0, {})(student, teacher, None)
    moved = build_logit_loss("lskd", 4.0, {})(3 * student + 1, 0.5 * teacher - 2, None)
    assert moved.item() == pytest.approx(base.item(), rel=1e-4)


def test_dist_is_one_minus_pearson_across_classes_and_across_the_batch():
    """DIST (Huang et al., 2022) against numpy's correlation coefficients, on 4 classes."""
    student, teacher = torch.randn(16, 4), torch.randn(16, 4)
    temperature = 2.0
    p_s = (student / temperature).softmax(1).numpy()
    p_t = (teacher / temperature).softmax(1).numpy()
    inter = np.mean([1 - np.corrcoef(p_s[i], p_t[i])[0, 1] for i in range(16)])
    intra = np.mean([1 - np.corrcoef(p_s[:, j], p_t[:, j])[0, 1] for j in range(4)])
    for inter_weight, intra_weight in ((1.0, 0.0), (0.0, 1.0), (1.0, 2.0)):
        loss = build_logit_loss("dist", temperature, {"inter_weight": inter_weight, "intra_weight": intra_weight})
        expected = temperature**2 * (inter_weight * inter + intra_weight * intra)
        assert loss(student, teacher, None).item() == pytest.approx(expected, rel=1e-4)


def test_dist_on_two_classes_is_its_intra_class_term(caplog):
    """Two probabilities (p, 1 - p) correlate at +-1 with any other pair: the inter-class term has no gradient;
    the intra-class term correlates the batch's P(positive) with the teacher's, and a run says so."""
    student, teacher = torch.randn(32, 2, requires_grad=True), torch.randn(32, 2)
    build_logit_loss("dist", 4.0, {"intra_weight": 0.0})(student, teacher, None).backward()
    assert student.grad.abs().max().item() < 1e-6
    student.grad = None
    build_logit_loss("dist", 4.0, {"inter_weight": 0.0})(student, teacher, None).backward()
    assert student.grad.abs().max().item() > 1e-3
    with caplog.at_level(logging.WARNING, logger="medkd"):
        LOGIT_LOSSES["dist"].check_task(["NORMAL", "PNEUMONIA"])
        LOGIT_LOSSES["dist"].check_task(["BACTERIA", "NORMAL", "VIRUS"])
    assert len([r for r in caplog.records if "inter_weight does nothing" in r.getMessage()]) == 1


def test_ensemble_softmax_is_the_mean_of_softened_probabilities():
    stacked = torch.randn(10, 3, 4)
    combined = ensemble_logits(stacked, 3.0)
    assert torch.allclose((combined / 3.0).softmax(1), (stacked / 3.0).softmax(2).mean(1), atol=1e-6)
    assert torch.equal(ensemble_logits(stacked[:, :1], 3.0), stacked[:, 0])


def test_distill_settings_are_checked():
    with pytest.raises(ValueError, match="online"):
        settings(hint={"student_layer": "a", "teacher_layer": "b"})
    with pytest.raises(ValueError, match="hint section"):
        settings(loss="hint")
    with pytest.raises(ConfigError, match="scratch or finetune"):
        load_recipe(None, {"data": {"path": "x"}, "train": {"transfer": "linear"}, "distill": {"teachers": ["t"]}})
    with pytest.raises(ValueError, match=r"unknown loss 'kld'.*\['dist', 'dkd', 'kd', 'lskd'"):
        settings(loss="kld")
    with pytest.raises(ValueError, match="tckd_weigth"):  # a misspelt setting of the loss, named
        settings(loss="dkd", loss_params={"tckd_weigth": 2})
    with pytest.raises(ValueError, match="no loss_params"):
        settings(loss="hint", loss_params={"weight": 1}, hint={"student_layer": "a", "teacher_layer": "b"},
                 teacher_outputs="online")
    # a stage's loss is checked when the recipe is read, not when the stage's turn comes
    with pytest.raises(ConfigError, match=r"(?s)stages.student.distill.*unknown loss"):
        load_recipe(None, {"data": {"path": "x"}, "stages": [{"name": "teacher"}, {
            "name": "student", "distill": {"teachers": ["teacher"], "loss": "kld"}}]})


def test_a_new_loss_is_one_registered_class_with_its_own_params():
    class ScaledParams(StrictModel):
        scale: float = 1.0

    @register_logit_loss("scaled_kd_test")
    class ScaledKD(LogitLoss):
        Params = ScaledParams

        def per_sample(self, student, teacher, labels):
            return self.params.scale * (student - teacher).abs().mean(dim=1)

    try:
        config = settings(loss="scaled_kd_test", loss_params={"scale": 3.0})  # accepted: the registry is the list
        loss = build_logit_loss(config.loss, config.temperature, config.loss_params)
        assert loss(torch.ones(2, 2), torch.zeros(2, 2), None).item() == 3.0
    finally:
        del LOGIT_LOSSES["scaled_kd_test"]


# ---- runs on generated images ------------------------------------------------------------------------------------

@pytest.fixture
def generated(trained_run) -> tuple[DataConfig, Path]:
    """The data and the shared trained run (conftest) as the teacher."""
    return trained_run.config, trained_run.folder


STUDENT = TrainConfig(model="compact_cnn", model_args={"width": 8}, epochs=2, batch_size=16, precision="32")


def test_teacher_is_frozen_and_only_the_student_learns(generated, tmp_path):
    config, teacher = generated
    before = {k: v.clone() for k, v in load_model(teacher)[0].state_dict().items()}
    extension = Distillation(settings(teachers=[str(teacher)], teacher_outputs="online"))
    out = fit(config, STUDENT, tmp_path / "student", extension=extension, show_progress=False)
    frozen = extension.teacher
    assert not frozen.training and all(not p.requires_grad and p.grad is None for p in frozen.parameters())
    after = frozen.models[0].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and batch-norm statistics untouched
    trained, _ = load_model(out)
    untrained = create_model("compact_cnn", num_classes=2, in_chans=1, width=8)
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), untrained.state_dict().values()))
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert not any(k.startswith("teacher.") for k in checkpoint["state_dict"])  # the teacher lives in its own run


def test_cached_and_online_teacher_targets_are_identical_without_augmentation(generated, tmp_path):
    config, teacher = generated
    data = prepare(config, show_progress=False)
    mean, std = normalisation(1)
    modules = {}
    for mode in ("cached", "online"):
        splits = {s: split_tensors(data, s) for s in ("train", "val")}
        student = create_model("compact_cnn", num_classes=2, in_chans=1, width=8)
        modules[mode] = Distillation(settings(teachers=[str(teacher)], teacher_outputs=mode)).build_module(
            student, STUDENT, data, splits, mean=mean, std=std, class_weight=None, out=tmp_path / mode)
        loader = TensorDataModule({"val": splits["train"]}, 16, augment=None).val_dataloader()  # train, un-shuffled
        modules[mode] = [modules[mode].teacher_targets(modules[mode].on_after_batch_transfer(b, 0)) for b in loader]
    for cached, online in zip(modules["cached"], modules["online"]):
        assert torch.allclose(cached, online, atol=1e-5)


def test_function_matching_mixes_the_batch_that_teacher_and_student_both_read(generated, tmp_path):
    """mixup (Beyer et al., 2022): the student's batch is mixed with a shuffled copy of itself, the teacher's
    targets are its outputs on the mixed images, and the hard-label loss mixes both labels; refused with cached
    targets (they belong to unmixed images); a run trains and evaluates with it."""
    config, teacher = generated
    with pytest.raises(ValueError, match="mixup .*teacher_outputs: online"):
        settings(mixup=1.0)
    data = prepare(config, show_progress=False)
    mean, std = normalisation(1)
    splits = {s: split_tensors(data, s) for s in ("train", "val")}
    student = create_model("compact_cnn", num_classes=2, in_chans=1, width=8)
    module = Distillation(settings(teachers=[str(teacher)], teacher_outputs="online", mixup=1.0)).build_module(
        student, STUDENT, data, splits, mean=mean, std=std, class_weight=None, out=tmp_path / "fm")
    images, labels = splits["train"][:2]
    both_classes = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:16]
    batch = module.named(module.on_after_batch_transfer(next(iter(TensorDataModule(
        {"val": (images[both_classes], labels[both_classes])}, 16, augment=None).val_dataloader())), 0))
    assert len(set(batch.labels.tolist())) == 2
    torch.manual_seed(3)
    mixed = module.mixed(batch)
    partner_labels, weight = mixed.partner_labels, float(mixed.own_weight)
    assert 0 < weight < 1 and not torch.equal(partner_labels, batch.labels)
    # every mixed image is weight * its image + (1 - weight) * one other image of the batch with its label
    for i in range(len(batch.labels)):
        residual = (mixed.inputs[i] - weight * batch.inputs[i]) / (1 - weight)
        matches = [j for j in range(len(batch.labels)) if torch.allclose(residual, batch.inputs[j], atol=1e-4)]
        assert matches and batch.labels[matches[0]] == partner_labels[i]
    assert torch.allclose(module.teacher_targets(mixed), module.teacher(mixed.inputs)[:, 0], atol=1e-5)
    out = distill(config, STUDENT, settings(teachers=[str(teacher)], teacher_outputs="online", mixup=1.0),
                  tmp_path / "run", show_progress=False)
    assert json.loads((out / "model.json").read_text())["distillation"]["teacher_outputs"] == "online"


def test_the_mixed_hard_label_loss_weighs_each_label_as_its_pixels():
    """mixup's hard-label loss: one weight for the batch gives lambda CE(own) + (1 - lambda) CE(partner), class
    weights included; per-sample weights weigh each sample's two labels by its own share; lambda 1 is the plain
    loss."""
    from medkd.engine import LossConfig, classification_loss, mixed_classification_loss

    generator = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(12, 3, generator=generator), torch.randint(3, (12,), generator=generator)
    partners = labels[torch.randperm(12, generator=generator)]
    plain, weight = LossConfig(), torch.tensor([0.5, 1.0, 2.0])
    for class_weight in (None, weight):
        expected = (0.3 * F.cross_entropy(logits, labels, weight=class_weight)
                    + 0.7 * F.cross_entropy(logits, partners, weight=class_weight))
        torch.testing.assert_close(mixed_classification_loss(logits, labels, partners, torch.tensor(0.3), plain,
                                                             class_weight), expected)
    own = torch.rand(12, generator=generator)
    per_sample = (own * F.cross_entropy(logits, labels, reduction="none")
                  + (1 - own) * F.cross_entropy(logits, partners, reduction="none")).mean()
    torch.testing.assert_close(mixed_classification_loss(logits, labels, partners, own, plain), per_sample)
    focal = LossConfig(name="focal", focal_gamma=2.0)
    torch.testing.assert_close(mixed_classification_loss(logits, labels, partners, torch.ones(12), focal, weight),
                               classification_loss(logits, labels, focal, weight))


def test_function_matching_on_replayed_mixed_views_trains_from_cached_targets(generated, tmp_path):
    """cached_views + mixup: the teachers' outputs on K mixed views per image are computed once; the loader's
    batches carry the partners' labels and weights (mixed once, in the loader), a run of `medkd distill` trains
    and evaluates with them, and the card records the mixup."""
    config, teacher = generated
    fm = settings(teachers=[str(teacher)], teacher_outputs="cached_views", views=2, mixup=1.0)
    data = prepare(config, show_progress=False)
    mean, std = normalisation(1)
    splits = {s: split_tensors(data, s) for s in ("train", "val")}
    extension = Distillation(fm, show_progress=False)
    module = extension.build_module(create_model("compact_cnn", num_classes=2, in_chans=1, width=8), STUDENT, data,
                                    splits, mean=mean, std=std, class_weight=None, out=tmp_path / "parts")
    assert extension.train_views.mixup == 1.0 and splits["train"][2].shape[1:] == (2, 1, 2)
    loader = TensorDataModule(splits, 16, augment=STUDENT.augment, train_views=extension.train_views)
    batch = module.named(module.on_after_batch_transfer(next(iter(loader.train_dataloader())), 0))
    assert batch.partner_labels is not None and batch.own_weight is not None
    assert batch.own_weight.shape == (16,) and len(set(batch.own_weight.tolist())) > 1  # a weight per image
    assert module.mixed(batch) is batch  # mixed in the loader: not mixed again
    out = tmp_path / "run"  # from the command line
    result = CliRunner().invoke(app, [
        "distill", "--teacher", str(teacher), "--data", config.path, "--cache-dir", config.cache_dir, "--size", "32",
        "--channels", "1", "--student", "compact_cnn", "--epochs", str(STUDENT.epochs), "--batch-size", "16",
        "--teacher-outputs", "cached_views", "--views", "2", "--mixup", "1", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "model.json").read_text())["distillation"]
    assert record["teacher_outputs"] == "cached_views" and record["mixup"] == 1.0 and record["views"] == 2
    student, _ = load_model(out)
    test_images, _ = data.split("test")
    assert len(pd.read_csv(out / "metrics.csv")["epoch"].unique()) == STUDENT.epochs
    assert torch.isfinite(predict_logits(student, test_images, mean=mean, std=std)).all()


def test_cached_teacher_targets_follow_their_images_onto_the_device(generated, tmp_path):
    """With images kept on the device, a shuffled batch's cached teacher logits are gathered with its images: they
    equal the teacher's own (online) logits on those very images."""
    config, teacher = generated
    data = prepare(config, show_progress=False)
    mean, std = normalisation(1)
    modules, splits = {}, {}
    for mode in ("cached", "online"):
        splits[mode] = {s: split_tensors(data, s) for s in ("train", "val")}
        student = create_model("compact_cnn", num_classes=2, in_chans=1, width=8)
        modules[mode] = Distillation(settings(teachers=[str(teacher)], teacher_outputs=mode)).build_module(
            student, STUDENT, data, splits[mode], mean=mean, std=std, class_weight=None, out=tmp_path / mode)
    datamodule = TensorDataModule(splits["cached"], 16, augment=None, images_on_device=True)
    torch.manual_seed(0)
    for indices in list(datamodule.train_dataloader())[:3]:
        assert not torch.equal(indices, torch.arange(indices[0], indices[0] + len(indices)))  # shuffled
        batch = modules["cached"].on_after_batch_transfer(
            datamodule.transfer_batch_to_device(indices, torch.device("cpu"), 0), 0)
        assert torch.allclose(modules["cached"].teacher_targets(batch), modules["online"].teacher_targets(batch),
                              atol=1e-5)


def test_weight_by_class_weighs_the_kd_term_as_the_hard_label_loss_is(generated, tmp_path):
    config, teacher = generated
    data = prepare(config, show_progress=False)
    mean, std = normalisation(1)
    student = create_model("compact_cnn", num_classes=2, in_chans=1, width=8)
    weighted = settings(teachers=[str(teacher)], weight_by_class=True, alpha=1.0)  # the KD term alone
    with pytest.raises(DistillationError, match="class_weights: balanced"):
        Distillation(weighted).build_module(student, STUDENT, data,
                                            {s: split_tensors(data, s) for s in ("train", "val")},
                                            mean=mean, std=std, class_weight=None, out=tmp_path / "unweighted")
    splits = {s: split_tensors(data, s) for s in ("train", "val")}
    only_pneumonia = torch.tensor([0.0, 1.0])  # weights of NORMAL, PNEUMONIA: only PNEUMONIA samples count
    module = Distillation(weighted).build_module(student, STUDENT, data, splits, mean=mean, std=std,
                                                 class_weight=only_pneumonia, out=tmp_path / "weighted").eval()
    whole_split = len(splits["train"][1])  # one batch holding both classes
    batch = module.on_after_batch_transfer(next(iter(TensorDataModule({"val": splits["train"]}, whole_split,
                                                                      augment=None).val_dataloader())), 0)
    labels = batch[1]
    assert 0 < int(labels.sum()) < len(labels)  # both classes in the batch
    each = module.logit_loss.per_sample(module(batch[0]).float(), module.teacher_targets(batch), labels)
    assert module.training_step(batch, 0).item() == pytest.approx(each[labels == 1].mean().item(), rel=1e-5)


def test_distill_command_writes_a_run_with_agreement_and_resumes(generated, tmp_path):
    config, teacher = generated
    command = ["distill", "--teacher", str(teacher), "--data", config.path, "--cache-dir", config.cache_dir,
               "--size", "32", "--channels", "1", "--student", "compact_cnn", "--epochs", "1", "--batch-size", "16",
               "--loss", "dkd", "--temperature", "2", "--out", str(tmp_path / "run"), "--no-progress"]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    command[command.index("--epochs") + 1] = "2"  # a longer run in the same folder continues after epoch 1
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0, again.output
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(metrics["epoch"]) == [0, 1] and metrics["val_agreement"].between(0, 1).all()
    report = json.loads((tmp_path / "run" / "distillation.json").read_text())
    assert 0 <= report["test"]["agreement"] <= 1 and report["test"]["kl_teacher_student"] >= 0
    sidecar = json.loads((tmp_path / "run" / "model.json").read_text())
    assert sidecar["distillation"]["loss"] == "dkd" and sidecar["architecture"] == "compact_cnn"


def test_sweep_distils_from_each_teacher_and_the_ensemble(generated, tmp_path):
    config, teacher = generated
    second = fit(config, TrainConfig(model="compact_cnn", model_args={"width": 16}, epochs=1, batch_size=32,
                                     precision="32", seed=1), tmp_path / "teacher2", show_progress=False)
    result = CliRunner().invoke(app, ["distill", "--teacher", str(teacher), "--teacher", str(second), "--sweep",
                                      "--data", config.path, "--cache-dir", config.cache_dir, "--size", "32",
                                      "--channels", "1", "--student", "compact_cnn", "--epochs", "1",
                                      "--out", str(tmp_path / "sweep"), "--no-progress"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert list(table["teachers"]) == [teacher.name, "teacher2", "ensemble"]
    assert table["auc"].between(0, 1).all() and table["test_agreement"].between(0, 1).all()


def test_feature_hint_trains_its_connector(generated, tmp_path):
    config, teacher = generated
    hint = {"student_layer": "4", "teacher_layer": "8"}  # compact_cnn: 2nd conv block's conv / 3rd block's conv
    out = distill(config, STUDENT.model_copy(update={"epochs": 3}),
                  settings(teachers=[str(teacher)], loss="hint", hint=hint, teacher_outputs="online"),
                  tmp_path / "hint", show_progress=False)
    losses = pd.read_csv(next((out / "logs").glob("version_*/metrics.csv")))["train_hint_loss"].dropna().to_numpy()
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_mismatched_teacher_and_bad_hint_layer_are_explained(generated, tmp_path):
    config, teacher = generated
    mean, std = normalisation(1)
    with pytest.raises(DistillationError, match=r"predicts classes \['NORMAL', 'PNEUMONIA'\].*same order"):
        load_teachers([str(teacher)], classes=["PNEUMONIA", "NORMAL"], preprocessing=config.preprocessing,
                      normalisation=Normalisation(mean=mean, std=std))
    with pytest.raises(DistillationError, match="no module 'layer9'"):
        distill(config, STUDENT, settings(teachers=[str(teacher)], loss="hint", teacher_outputs="online",
                                          hint={"student_layer": "layer9", "teacher_layer": "8"}),
                tmp_path / "bad", show_progress=False)


# ---- a real teacher on real X-rays --------------------------------------------------------------------------------

def test_distilled_student_agrees_with_its_teacher_more_than_a_matched_control(real_data, tmp_path):
    """Teacher and students train on real chest X-rays (32 px, 30 % of the train patients). The teacher learnt
    with class-balanced weights, so its decisions differ from a plainly trained model's in a way labels alone do
    not teach. The KD student and its control share architecture, seed, epochs and data, and differ only in the
    loss (alpha 1: teacher only). Agreement is measured on the val and test images together."""
    config = DataConfig.model_validate({"path": str(real_data / "chest_xray"),
                                        "preprocessing": {"size": 32, "channels": 1},
                                        "split": {"train_fraction": 0.3}})
    fast = {"batch_size": 32, "precision": "32", "augment": None}
    teacher = fit(config, TrainConfig(model="compact_cnn", model_args={"width": 16}, epochs=3,
                                      loss={"class_weights": "balanced"}, **fast),
                  tmp_path / "teacher", show_progress=False)
    student = TrainConfig(model="compact_cnn", model_args={"width": 8}, epochs=3, seed=3, **fast)
    control = fit(config, student, tmp_path / "control", show_progress=False)
    distilled = distill(config, student, settings(teachers=[str(teacher)], temperature=2.0, alpha=1.0),
                        tmp_path / "kd", show_progress=False)
    data = prepare(config, show_progress=False)
    images = np.concatenate([data.split("val")[0], data.split("test")[0]])
    mean, std = normalisation(1)
    outputs = {name: predict_logits(load_model(folder)[0], images, mean=mean, std=std)
               for name, folder in (("teacher", teacher), ("control", control), ("kd", distilled))}
    agreement = {name: (outputs[name].argmax(1) == outputs["teacher"].argmax(1)).float().mean().item()
                 for name in ("control", "kd")}
    kl = {name: soft_kl(outputs[name], outputs["teacher"], 1.0).mean().item() for name in ("control", "kd")}
    assert agreement["kd"] > agreement["control"], agreement
    assert kl["kd"] < kl["control"], kl


def test_feature_losses_compare_where_and_what_the_two_maps_hold():
    """attention: zero when both maps attend alike whatever their channels (the teacher's map is the student's
    repeated), positive otherwise, also across sides; no parameters. fitnet: a 1x1 connector from the student's
    channels to the teacher's, zero loss once it maps one onto the other."""
    from medkd.distillation.hint import build_feature_loss

    torch.manual_seed(0)
    student = torch.randn(3, 4, 8, 8)
    teacher = student.repeat(1, 2, 1, 1)
    attention = build_feature_loss("attention", 4, 8, {"exponent": 2.0})
    assert not list(attention.parameters())
    assert attention(student, teacher).item() == pytest.approx(0, abs=1e-3)
    assert attention(torch.randn(3, 4, 8, 8), teacher).item() > 0.01
    assert attention(torch.randn(3, 4, 4, 4), teacher).item() > 0.01  # the student's map resized to the teacher's
    fitnet = build_feature_loss("fitnet", 4, 8, {})
    assert fitnet.connector.weight.shape == (8, 4, 1, 1)
    with torch.no_grad():
        fitnet.connector.weight.copy_(torch.eye(4).repeat(2, 1)[..., None, None])
        fitnet.connector.bias.zero_()
    assert fitnet(student, student.repeat(1, 2, 1, 1)).item() == pytest.approx(0, abs=1e-10)
    with pytest.raises(Exception, match="exponent"):
        build_feature_loss("attention", 4, 8, {"exponent": -1})


def test_a_kd_loss_undefined_on_two_classes_is_refused_and_dkd_says_what_it_reduces_to(generated, tmp_path, caplog):
    """lskd z-scores two logits to (+1/sqrt 2, -1/sqrt 2) whatever they are: on the two-class task it is refused
    before training, with what to use; dkd's non-target term is 0 on two classes, and the run says so."""
    config, teacher = generated
    two = torch.tensor([[3.0, -1.0], [0.2, 0.1]])
    assert torch.allclose(standardise(two), standardise(torch.tensor([[9.0, 1.0], [5.0, -7.0]])))
    with pytest.raises(DistillationError, match=r"lskd .*two classes.*Use kd"):
        distill(config, STUDENT, settings(teachers=[str(teacher)], loss="lskd"), tmp_path / "lskd",
                show_progress=False)
    assert not (tmp_path / "lskd" / "model.json").exists()
    with caplog.at_level(logging.WARNING, logger="medkd"):
        LOGIT_LOSSES["dkd"].check_task(["NORMAL", "PNEUMONIA"])
        LOGIT_LOSSES["dkd"].check_task(["BACTERIA", "NORMAL", "VIRUS"])
    assert len([r for r in caplog.records if "nckd_weight does nothing" in r.getMessage()]) == 1
    LOGIT_LOSSES["lskd"].check_task(["BACTERIA", "NORMAL", "VIRUS"])  # defined on three classes
