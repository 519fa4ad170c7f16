"""The device data path: training images kept on the training device and augmented there in batches (kornia),
checked against the per-image loader path (torchvision v2) it stands in for. Runs on the CPU device here; a GPU
only changes where the same tensors live."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.accelerators import CUDAAccelerator
from skimage import data as skimage_data
from skimage.transform import resize

from conftest import write_kermany_like
from medkd.data import DataConfig, prepare
from medkd.device import images_on_device
from medkd.engine import (
    AugmentConfig,
    TensorDataModule,
    TrainConfig,
    ViewPlan,
    build_augmentation,
    build_batch_augmentation,
    fit,
)
from medkd.evaluation import evaluate_run

SIZE = 64
DRAWS = 256


def camera(size: int = SIZE) -> torch.Tensor:
    """scikit-image's grey photograph, uint8 (1, size, size)."""
    image = resize(skimage_data.camera(), (size, size), anti_aliasing=True, preserve_range=True)
    return torch.from_numpy(np.round(image).astype(np.uint8))[None]


def per_image(settings: AugmentConfig, image: torch.Tensor, draws: int = DRAWS) -> torch.Tensor:
    transform = build_augmentation(settings)
    return torch.stack([transform(image) for _ in range(draws)])


def batched(settings: AugmentConfig, image: torch.Tensor, draws: int = DRAWS) -> torch.Tensor:
    return build_batch_augmentation(settings)(image.expand(draws, *image.shape).contiguous())


def test_batched_augmentation_draws_each_image_its_own_transform():
    torch.manual_seed(0)
    image = camera()
    out = batched(AugmentConfig(), image, draws=32)
    assert out.shape == (32, 1, SIZE, SIZE) and out.dtype == torch.uint8
    assert len({tuple(o.flatten()[:: 97].tolist()) for o in out}) == 32  # no two images got the same draw
    torch.manual_seed(0)
    assert torch.equal(batched(AugmentConfig(), image, draws=32), out)  # a seeded run draws the same again
    assert build_batch_augmentation(None) is None
    off = AugmentConfig(rotation_degrees=0, translate=0, scale=(1.0, 1.0), brightness=0, contrast=0)
    assert build_batch_augmentation(off) is None and build_augmentation(off) is None


def test_batched_brightness_stays_within_the_loaders_range():
    """brightness b multiplies each image by one factor from [1 - b, 1 + b], as torchvision's ColorJitter does."""
    torch.manual_seed(0)
    brightness = AugmentConfig(rotation_degrees=0, translate=0, scale=(1.0, 1.0), brightness=0.2, contrast=0)
    flat = torch.full((1, 8, 8), 100, dtype=torch.uint8)
    for out in (batched(brightness, flat), per_image(brightness, flat)):
        factors = out.float().mean(dim=(1, 2, 3)) / 100
        assert (out.float().std(dim=(1, 2, 3)) == 0).all()  # one factor per image
        assert factors.min() >= 0.8 - 0.01 and factors.max() <= 1.2 + 0.01
        assert factors.min() < 0.85 and factors.max() > 1.15  # the whole range is drawn


def test_batched_shift_moves_a_point_within_the_loaders_range():
    """translate t shifts each image by up to t of its side, in both directions (nearest sampling, zero fill)."""
    torch.manual_seed(0)
    shift = AugmentConfig(rotation_degrees=0, translate=0.1, scale=(1.0, 1.0), brightness=0, contrast=0)
    point = torch.zeros((1, SIZE, SIZE), dtype=torch.uint8)
    point[0, SIZE // 2, SIZE // 2] = 255
    for out in (batched(shift, point), per_image(shift, point)):
        assert ((out == 255).flatten(1).sum(dim=1) == 1).all()  # nearest sampling keeps the point whole
        where = out[:, 0].flatten(1).argmax(dim=1)  # the point's position in each image
        rows, cols = where.div(SIZE, rounding_mode="floor"), where % SIZE
        for moved in (rows - SIZE // 2, cols - SIZE // 2):
            assert moved.abs().max() <= 0.1 * SIZE + 1 and moved.min() < -3 and moved.max() > 3


def test_batched_and_per_image_augmentation_change_a_photo_alike():
    """The default settings (rotation, shift, zoom, brightness, contrast) move a real photograph's pixels by the
    same amount either way: mean absolute change per image, over 256 draws each."""
    torch.manual_seed(0)
    image, settings = camera(), AugmentConfig()
    change = {name: (how(settings, image).float() - image.float()).abs().mean(dim=(1, 2, 3))
              for name, how in (("loader", per_image), ("batched", batched))}
    loader, device = change["loader"].mean().item(), change["batched"].mean().item()
    assert loader > 5 and abs(device - loader) < 0.1 * loader, (loader, device)
    assert abs(change["batched"].std().item() - change["loader"].std().item()) < 0.25 * change["loader"].std().item()


def test_device_batches_hold_the_samples_the_loader_drew():
    """Indices come from the same samplers (shuffle, balanced); images, labels and per-sample targets are gathered
    together on the device."""
    n = 200
    labels = torch.tensor([0] * 180 + [1] * 20)
    images = torch.arange(n, dtype=torch.int64).view(n, 1, 1, 1).expand(n, 1, 4, 4).to(torch.uint8)  # pixel = index
    targets = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 2)
    for sampler in ("shuffle", "balanced"):
        module = TensorDataModule({"train": (images, labels, targets), "val": (images, labels, targets)}, 50,
                                  sampler=sampler, augment=None, images_on_device=True)
        torch.manual_seed(0)
        batches = [module.transfer_batch_to_device(b, torch.device("cpu"), 0) for b in module.train_dataloader()]
        for batch_images, batch_labels, batch_targets in batches:
            index = batch_images[:, 0, 0, 0].long()
            assert torch.equal(batch_labels, labels[index]) and torch.equal(batch_targets[:, 0], index.float())
        drawn = torch.cat([b[1] for b in batches])
        if sampler == "shuffle":
            assert sorted(torch.cat([b[0][:, 0, 0, 0] for b in batches]).tolist()) == list(range(n))
        else:
            assert abs(drawn.float().mean().item() - 0.5) < 0.15
        val = next(iter(module.val_dataloader()))  # validation is left as the loader builds it
        assert torch.equal(val[0], images[:50])


def test_seeded_views_keep_augmentation_in_the_loader():
    """A teacher's own view or replayed views must follow each image's draw: those runs stay on the loader path."""
    splits = {"train": (torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64))}
    assert not TensorDataModule(splits, 2, images_on_device=True, train_views=ViewPlan(paired=1)).images_on_device
    assert TensorDataModule(splits, 2, images_on_device=True).images_on_device


def test_images_on_device_only_beside_a_gpu_unless_asked(monkeypatch):
    monkeypatch.setattr(CUDAAccelerator, "is_available", lambda: False)
    assert TrainConfig().runtime.images_on_device == "auto" and not images_on_device("auto", "auto")
    assert images_on_device(True, "cpu") and not images_on_device(False, "auto")
    monkeypatch.setattr(CUDAAccelerator, "is_available", lambda: True)
    assert images_on_device("auto", "auto") and not images_on_device("auto", "cpu")


def test_a_run_trains_with_images_on_the_device(tmp_path: Path, cache_dir, caplog):
    """A real (tiny) run on the device path learns the generated X-rays' band and logs what its saved model scores."""
    root = write_kermany_like(tmp_path / "xray", {"train": 4, "test": 2}, patients_per_class=20)
    config = DataConfig.model_validate({"path": str(root), "cache_dir": cache_dir,
                                        "preprocessing": {"size": 32, "channels": 1}, "split": {"min_val_size": 1}})
    settings = TrainConfig(model="compact_cnn", epochs=3, batch_size=32, runtime={"images_on_device": True})
    caplog.set_level(logging.INFO, logger="medkd")
    out = fit(config, settings, tmp_path / "run", show_progress=False)
    assert "kept on cpu: batches are gathered and augmented there" in caplog.text
    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    data = prepare(config, show_progress=False)
    assert evaluate_run(out, "test", data=data, show_progress=False).at_argmax["auc"] > 0.9
    best = max(float(r["val_auc"]) for r in rows)
    assert evaluate_run(out, "val", data=data, show_progress=False).at_argmax["auc"] == pytest.approx(best, abs=1e-4)

