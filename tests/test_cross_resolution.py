"""Cross-resolution distillation: a teacher sees its own view of the student's samples (its resolution), online
teachers share the student's augmentation draw, and cached augmented views are replayed with the teacher outputs
of that very view."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from skimage import data as samples
from skimage.transform import resize

from medkd.data import prepare
from medkd.distillation import Distillation, DistillationError, DistillConfig, distill
from medkd.distillation.views import same_samples, teacher_logits
from medkd.engine import AugmentConfig, TrainConfig, ViewPlan, build_augmentation, fit
from medkd.engine.datamodule import (
    CachedImages,
    TensorDataModule,
    augment_seeded,
    augmented_view,
    mix_pixels,
    split_tensors,
    view_partner,
    view_seed,
)
from medkd.evaluation import predict_run_logits
from medkd.models import create_model, load_model, normalisation

STUDENT = TrainConfig(model="compact_cnn", model_args={"width": 8}, epochs=1, batch_size=16, precision="32")
GEOMETRY = AugmentConfig(rotation_degrees=30, translate=0.1, scale=(0.9, 1.1), brightness=0.2, contrast=0.2,
                         horizontal_flip=True)


def student_at(config, size: int):
    """The teacher's data config at another resolution: the student's."""
    return config.model_copy(update={"preprocessing": config.preprocessing.model_copy(update={"size": size})})


def test_a_teacher_at_another_resolution_teaches_from_its_own_view(trained_run, tmp_path):
    """The teacher trained at 32 px, the student at 24 px: the cached targets are the teacher's own predictions on
    its 32 px images of the same samples, and the run records the teacher's preprocessing."""
    teacher, student_config = trained_run.folder, student_at(trained_run.config, 24)
    out = distill(student_config, STUDENT, DistillConfig(teachers=[str(teacher)]), tmp_path / "student",
                  show_progress=False)
    model, card = load_model(teacher)
    own_images, _ = prepare(trained_run.config, show_progress=False).split("train")
    expected = predict_run_logits(model, own_images, card)
    cached = load_file(out / "teacher_logits.safetensors")["train"]
    student_images, _ = prepare(student_config, show_progress=False).split("train")
    assert student_images.shape[-1] == 24 and own_images.shape[-1] == 32
    torch.testing.assert_close(cached[:, 0], expected, atol=1e-5, rtol=1e-5)
    record = json.loads((out / "model.json").read_text())
    assert record["preprocessing"]["size"] == 24
    assert record["distillation"]["teacher_preprocessing"] == [card.preprocessing.model_dump()]
    report = json.loads((out / "distillation.json").read_text())
    assert 0 <= report["test"]["agreement"] <= 1


def test_a_linear_probe_teacher_teaches_from_the_features_its_run_cached(trained_run, tmp_path, caplog):
    """A probe teacher (frozen backbone, trained head) at 32 px, the student at 24 px: its cached targets are its
    head on the backbone features its own run cached (no network pass, no new extraction), and equal the whole
    teacher's predictions on its own view."""
    probe = TrainConfig(model="compact_cnn", model_args={"width": 8}, transfer="linear", epochs=2, batch_size=16,
                        precision="32")
    teacher = fit(trained_run.config, probe, tmp_path / "probe", show_progress=False)
    caplog.clear()
    with caplog.at_level("INFO"):
        out = distill(student_at(trained_run.config, 24), STUDENT, DistillConfig(teachers=[str(teacher)]),
                      tmp_path / "student", show_progress=False)
    assert ") and cached in" not in caplog.text  # no feature extraction
    assert caplog.text.count("read from cache") >= 2  # the train and val splits of the teacher's view
    model, card = load_model(teacher)
    data = prepare(trained_run.config, show_progress=False)
    cached = load_file(out / "teacher_logits.safetensors")
    for split in ("train", "val"):
        expected = predict_run_logits(model, data.split(split)[0], card)
        torch.testing.assert_close(cached[split][:, 0], expected, atol=1e-4, rtol=1e-4)


def test_an_online_teacher_at_another_resolution_reads_its_own_view(trained_run, tmp_path):
    """Without augmentation the online teacher's targets equal the cached ones: it reads its 32 px view of each
    sample of the student's 24 px batch, not an upsampled student image."""
    teacher, student_config = trained_run.folder, student_at(trained_run.config, 24)
    data = prepare(student_config, show_progress=False)
    mean, std = normalisation(1)
    targets = {}
    for mode in ("cached", "online"):
        splits = {split: split_tensors(data, split) for split in ("train", "val")}
        extension = Distillation(DistillConfig(teachers=[str(teacher)], teacher_outputs=mode), show_progress=False)
        module = extension.build_module(create_model("compact_cnn", num_classes=2, in_chans=1, width=8), STUDENT,
                                        data, splits, mean=mean, std=std, class_weight=None, out=tmp_path / mode)
        if mode == "online":
            assert extension.train_views == ViewPlan(paired=1) and splits["train"][2].shape[-1] == 32
        loader = TensorDataModule({"val": splits["train"]}, 16).val_dataloader()  # the train split, un-augmented
        targets[mode] = torch.cat([module.teacher_targets(module.on_after_batch_transfer(batch, 0))
                                   for batch in loader])
    torch.testing.assert_close(targets["online"], targets["cached"], atol=1e-5, rtol=1e-5)


def test_paired_views_get_the_same_augmentation():
    """A real photograph at 96 px (the teacher's view) and at 48 px (the student's): with a shared draw the student's
    augmented image is the teacher's, downsampled; independent draws are far apart."""
    photo = resize(samples.camera(), (96, 96), anti_aliasing=True, preserve_range=True).astype(np.uint8)
    large = torch.from_numpy(photo)[None, None].repeat(8, 1, 1, 1)
    small = F.interpolate(large.float(), size=48, mode="area").round().to(torch.uint8)
    transform = build_augmentation(GEOMETRY)
    labels = torch.zeros(8, dtype=torch.int64)
    paired = CachedImages(small, labels, large, transform=transform, views=ViewPlan(paired=1))
    independent = CachedImages(small, labels, large, transform=transform)  # the target passes through un-augmented
    torch.manual_seed(0)
    gaps = {"paired": [], "independent": []}
    for index in range(8):
        student, _, teacher = paired[index]
        other = transform(large[index])
        for name, view in (("paired", teacher), ("independent", other)):
            shrunk = F.interpolate(view[None].float(), size=48, mode="area")[0]
            gaps[name].append((shrunk - student.float()).abs().mean().item())
        assert torch.equal(independent[index][2], large[index])
    paired, independent = np.mean(gaps["paired"]), np.mean(gaps["independent"])  # grey levels of 255
    assert paired < 12 and independent > 4 * paired, gaps  # the rest: resampling at two sizes


def test_replayed_views_carry_the_teacher_outputs_of_that_very_view(trained_run):
    """cached_views: whatever view the loader draws, its target is the teacher's output on exactly that image."""
    model, card = load_model(trained_run.folder)
    data = prepare(trained_run.config, show_progress=False)
    transform = build_augmentation(GEOMETRY)
    logits = teacher_logits(torch.nn.ModuleList([model]), [card], [data], "val",
                            device=torch.device("cpu"), augmentation=transform, replay=3, replay_seed=7)
    images, labels = split_tensors(data, "val")
    assert logits.shape == (len(labels), 3, 1, 2)
    assert not torch.allclose(logits[:, 0], logits[:, 1])  # the views differ
    dataset = CachedImages(images, labels, logits, transform=transform, views=ViewPlan(replay=3, replay_seed=7))
    torch.manual_seed(0)
    for index in range(0, len(labels), max(1, len(labels) // 12)):
        image, _, target = dataset[index]
        assert not torch.equal(image, images[index])
        torch.testing.assert_close(predict_run_logits(model, image[None], card), target, atol=1e-5, rtol=1e-5)


def test_replayed_mixed_views_carry_the_teacher_outputs_of_that_very_mixture(trained_run):
    """cached_views with mixup (function matching at a cached teacher's cost): the item the loader draws is view k
    of its image mixed with view k of its partner at the drawn weight, followed by the partner's label and that
    weight, and its target is the teacher's output on exactly that mixed image."""
    model, card = load_model(trained_run.folder)
    data = prepare(trained_run.config, show_progress=False)
    transform = build_augmentation(GEOMETRY)
    logits = teacher_logits(torch.nn.ModuleList([model]), [card], [data], "val", device=torch.device("cpu"),
                            augmentation=transform, replay=3, replay_seed=7, mixup=1.0)
    images, labels = split_tensors(data, "val")
    unmixed = teacher_logits(torch.nn.ModuleList([model]), [card], [data], "val", device=torch.device("cpu"),
                             augmentation=transform, replay=3, replay_seed=7)
    assert logits.shape == unmixed.shape == (len(labels), 3, 1, 2) and not torch.allclose(logits, unmixed)
    plan = ViewPlan(replay=3, replay_seed=7, mixup=1.0)
    dataset = CachedImages(images, labels, logits, transform=transform, views=plan)
    torch.manual_seed(0)
    weights = []
    for index in range(0, len(labels), max(1, len(labels) // 12)):
        image, label, target, partner_label, weight = dataset[index]
        views = [(view, *view_partner(7, index, view, len(labels), 1.0)) for view in range(3)]
        drawn = [(view, partner, w) for view, partner, w in views
                 if torch.equal(image, mix_pixels(augment_seeded(transform, images[index], view_seed(7, index, view)),
                                                  augment_seeded(transform, images[partner],
                                                                 view_seed(7, partner, view)), w))]
        assert len(drawn) == 1, "the item is one of its image's three mixed views"
        view, partner, w = drawn[0]
        assert partner != index and partner_label == labels[partner] and label == labels[index]
        assert weight.dtype == torch.float32 and float(weight) == pytest.approx(w)
        torch.testing.assert_close(predict_run_logits(model, image[None], card), target, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(target, logits[index, view])
        weights.append(w)
    assert 0 < min(weights) < max(weights) < 1
    with pytest.raises(ValueError, match="replay > 0"):
        ViewPlan(mixup=1.0)


def test_mixed_views_are_the_same_mixture_at_every_resolution():
    """Real photographs at 96 px (a teacher's view) and at 48 px (the student's): view k of image i, mixed, at
    48 px is the 96 px mixture downsampled (same partner, weight and augmentation draw), not another mixture."""
    photos = [samples.camera(), samples.moon(), samples.coins(), samples.page(), samples.text()]
    large = torch.stack([torch.from_numpy(resize(photo, (96, 96), anti_aliasing=True, preserve_range=True)
                                          .astype(np.uint8))[None] for photo in photos])
    small = F.interpolate(large.float(), size=48, mode="area").round().to(torch.uint8)
    transform = build_augmentation(GEOMETRY)
    gaps = {"same": [], "other": []}
    for view in range(3):
        shrunk = F.interpolate(augmented_view(transform, large, 11, view, mixup=1.0).float(), size=48, mode="area")
        for name, seed in (("same", 11), ("other", 12)):
            gaps[name].append((shrunk - augmented_view(transform, small, seed, view, mixup=1.0).float())
                              .abs().mean().item())
    same, other = np.mean(gaps["same"]), np.mean(gaps["other"])  # grey levels of 255
    assert same < 12 and other > 3 * same, gaps


def test_cached_views_distil_and_resume(trained_run, tmp_path):
    teacher, config = trained_run.folder, trained_run.config
    settings = DistillConfig(teachers=[str(teacher)], teacher_outputs="cached_views", views=2)
    out = distill(config, STUDENT, settings, tmp_path / "student", show_progress=False)
    assert load_file(out / "teacher_logits.safetensors")["train"].shape[1:] == (2, 1, 2)
    assert json.loads((out / "model.json").read_text())["distillation"]["views"] == 2
    stamp = (out / "teacher_logits.safetensors").stat().st_mtime_ns
    distill(config, STUDENT.model_copy(update={"epochs": 2}), settings, out, show_progress=False)  # continues
    assert (out / "teacher_logits.safetensors").stat().st_mtime_ns == stamp  # the teacher's views are not redone
    with pytest.raises(DistillationError, match="augmentation on"):
        distill(config, STUDENT.model_copy(update={"augment": None}), settings, tmp_path / "off", show_progress=False)


def test_a_teacher_view_with_other_samples_is_refused(trained_run):
    data = prepare(trained_run.config, show_progress=False)
    fewer = dataclasses.replace(data, samples=data.samples.iloc[1:])
    with pytest.raises(DistillationError, match="holds other samples than the student's"):
        same_samples(data, fewer, {"size": 64})
