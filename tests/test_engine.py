"""The training engine: real (tiny) training runs on generated images, resume after a kill, linear probing."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.accelerators import CUDAAccelerator

from conftest import write_kermany_like
from medkd.data import DataConfig, cache_root, prepare
from medkd.device import feature_engine
from medkd.engine import LossConfig, TrainConfig, build_augmentation, fit
from medkd.engine.datamodule import TensorDataModule
from medkd.engine.losses import class_weights, classification_loss
from medkd.engine.module import auroc
from medkd.evaluation import backbone_identity, cached_features, evaluate_run, predict_logits
from medkd.files import RUN_CARD, staged, write_json
from medkd.models import CARD_FORMAT, CardError, RunCard, create_model, headless, load_model


@pytest.fixture(scope="module")
def xray_root(tmp_path_factory) -> Path:
    return write_kermany_like(tmp_path_factory.mktemp("data") / "xray", {"train": 4, "test": 2}, patients_per_class=20)


@pytest.fixture
def data_config(xray_root, cache_dir) -> DataConfig:
    return DataConfig.model_validate({"path": str(xray_root), "cache_dir": cache_dir,
                                      "preprocessing": {"size": 32, "channels": 1}, "split": {"min_val_size": 1}})


def read_metrics(folder: Path) -> list[dict]:
    with open(folder / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_run_folder_rebuilds_the_trained_model(data_config, tmp_path):
    out = fit(data_config, TrainConfig(model="compact_cnn", epochs=3, batch_size=32), tmp_path / "run",
              show_progress=False)
    for name in ("config.yaml", "metrics.csv", "model.safetensors", "last.safetensors", "model.json",
                 "checkpoints/last.ckpt", "data_location.json",
                 "skipped_files.csv"):  # the names users and scripts rely on (medkd.files)
        assert (out / name).exists(), name
    assert not list(out.rglob("*.tmp-*"))  # every file written whole: no staging file left behind
    assert [int(r["epoch"]) for r in read_metrics(out)] == [0, 1, 2]
    model, card = load_model(out)
    assert card.classes == ["NORMAL", "PNEUMONIA"] and card.in_chans == 1
    images, labels = prepare(data_config, show_progress=False).split("test")
    mean, std = card.normalisation.mean[0], card.normalisation.std[0]
    with torch.no_grad():
        probabilities = model((torch.from_numpy(images).float() / 255 - mean) / std).softmax(dim=1)
    assert auroc(probabilities, torch.from_numpy(labels)) > 0.9  # the bright band is learnt


def test_same_seed_same_metrics(data_config, tmp_path):
    settings = TrainConfig(model="compact_cnn", epochs=2, batch_size=32, seed=7)
    first = read_metrics(fit(data_config, settings, tmp_path / "a", show_progress=False))
    second = read_metrics(fit(data_config, settings, tmp_path / "b", show_progress=False))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(first) == strip(second)


def test_killed_run_resumes_to_the_same_epoch_count(xray_root, tmp_path, cache_dir):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "medkd.cli", "train", "--data", str(xray_root), "--size", "32", "--channels", "1",
               "--model", "compact_cnn", "--epochs", "8", "--batch-size", "16", "--out", str(out),
               "--cache-dir", cache_dir, "--no-progress"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "metrics.csv").exists() and len(read_metrics(out)) >= 1):
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    done_before = len(read_metrics(out))
    assert 1 <= done_before < 8, "the run must be killed part-way"
    assert not (out / "model.json").exists()
    subprocess.run(command, check=True, capture_output=True)
    epochs = [int(r["epoch"]) for r in read_metrics(out)]
    assert epochs == list(range(8))
    _, card = load_model(out)
    assert card.epochs_trained == 8


def test_linear_probe_caches_features_and_trains_fast(data_config, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="medkd")
    linear = TrainConfig(model="resnet18", transfer="linear", epochs=3, batch_size=32)
    fit(data_config, linear, tmp_path / "linear1", show_progress=False)
    assert "extracted (torch) and cached" in caplog.text  # 200 images: not worth exporting the backbone
    caplog.clear()
    second = fit(data_config, linear, tmp_path / "linear2", show_progress=False)
    assert "feature extraction skipped" in caplog.text and "extracted" not in caplog.text
    finetune = fit(data_config, TrainConfig(model="resnet18", transfer="finetune", epochs=2, batch_size=32),
                   tmp_path / "finetune", show_progress=False)
    linear_seconds = np.median([float(r["seconds"]) for r in read_metrics(second)])
    finetune_seconds = np.median([float(r["seconds"]) for r in read_metrics(finetune)])
    assert finetune_seconds > 10 * linear_seconds, (linear_seconds, finetune_seconds)
    model, card = load_model(second)  # the full model (frozen backbone + trained head) is in the folder
    assert card.transfer == "linear" and model(torch.zeros(1, 1, 32, 32)).shape == (1, 2)

    caplog.clear()  # a random backbone is its seed's own: another seed's cached features would not fit it
    other_seed = fit(data_config, linear.model_copy(update={"seed": 1}), tmp_path / "seed1", show_progress=False)
    assert "extracted (torch) and cached" in caplog.text
    best_val_auc = max(float(r["val_auc"]) for r in read_metrics(other_seed))
    assert evaluate_run(other_seed, "val", data=prepare(data_config, show_progress=False),
                        show_progress=False).at_argmax["auc"] == pytest.approx(best_val_auc, abs=1e-4)


def test_frozen_features_on_a_cpu_come_from_onnx_runtime_and_equal_pytorch_s(data_config, caplog):
    """The device policy extracts a frozen backbone's features with ONNX Runtime on a CPU (about twice PyTorch's
    speed for depthwise convolutions) from 1000 images on, or once the backbone is exported; they are PyTorch's up
    to float rounding, and the backbone's graph is exported once into the cache for every split."""
    caplog.set_level(logging.INFO, logger="medkd")
    data = prepare(data_config, show_progress=False)
    settings = TrainConfig(model="efficientnet_lite0", transfer="linear", epochs=1)
    model = create_model("efficientnet_lite0", num_classes=2, in_chans=1).eval()
    identity = backbone_identity(settings, 1, None)
    mean, std = [0.5], [0.5]
    assert feature_engine(torch.device("cpu"), images=999) == "torch"
    assert feature_engine(torch.device("cpu"), images=1000) == "onnxruntime"
    assert feature_engine(torch.device("cpu"), images=10, exported=True) == "onnxruntime"
    assert (feature_engine(torch.device("cuda"), images=10**6) == feature_engine(torch.device("cpu"), True, 10**6)
            == "torch")
    features, cached = cached_features(model, identity, data, "val", mean=mean, std=std, precision_bf16=False,
                                       device=torch.device("cpu"), engine="onnxruntime")
    assert not cached and "extracted (onnxruntime)" in caplog.text
    assert len(list((cache_root(data.config) / "features").glob("*.onnx"))) == 1
    reference = predict_logits(headless(model), data.split("val")[0], mean=mean, std=std)
    torch.testing.assert_close(features, reference, atol=1e-4, rtol=1e-4)
    again, cached = cached_features(model, identity, data, "val", mean=mean, std=std, precision_bf16=False,
                                    device=torch.device("cpu"))
    assert cached and torch.equal(again, features)
    caplog.clear()  # a small split of an exported backbone: ONNX Runtime too
    cached_features(model, identity, data, "test", mean=mean, std=std, precision_bf16=False, device=torch.device("cpu"))
    assert "extracted (onnxruntime)" in caplog.text
    assert len(list((cache_root(data.config) / "features").glob("*.onnx"))) == 1  # one export for every split


def test_imbalance_tools():
    weights = class_weights(np.array([300, 100]), "balanced")
    assert torch.allclose(weights * torch.tensor([300.0, 100.0]), torch.tensor([200.0, 200.0]))
    assert class_weights(np.array([300, 100]), "none") is None
    logits, labels = torch.randn(16, 3), torch.randint(0, 3, (16,))
    focal_zero = classification_loss(logits, labels, LossConfig(name="focal", focal_gamma=0.0))
    assert torch.allclose(focal_zero, classification_loss(logits, labels, LossConfig()))
    confident = torch.tensor([[5.0, -5.0]]), torch.tensor([0])
    assert (classification_loss(*confident, LossConfig(name="focal"))
            < classification_loss(*confident, LossConfig()) / 100)
    labels = torch.tensor([0] * 90 + [1] * 10)
    module = TensorDataModule({"train": (torch.zeros(100, 1), labels)}, batch_size=100, sampler="balanced")
    torch.manual_seed(0)
    drawn = torch.cat([y for _ in range(20) for _, y in module.train_dataloader()])
    assert abs(drawn.float().mean().item() - 0.5) < 0.05


def test_augmentation_changes_pixels_not_shape():
    from medkd.engine import AugmentConfig

    transform = build_augmentation(AugmentConfig(rotation_degrees=10, brightness=0.3))
    image = torch.randint(0, 255, (1, 32, 32), dtype=torch.uint8)
    out = transform(image)
    assert out.shape == image.shape and out.dtype == torch.uint8 and not torch.equal(out, image)
    off = AugmentConfig(rotation_degrees=0, translate=0, scale=(1.0, 1.0), brightness=0, contrast=0)
    assert build_augmentation(off) is None and build_augmentation(None) is None


def test_auto_precision_uses_bf16_only_where_the_cpu_has_it(monkeypatch):
    import importlib

    policy = importlib.import_module("medkd.device")

    monkeypatch.setattr(CUDAAccelerator, "is_available", lambda: False)
    for native, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(policy, "native_cpu_bf16", lambda native=native: native)
        assert policy.lightning_precision("auto", "auto") == expected
    assert policy.lightning_precision("bf16", "cpu") == "bf16-mixed"
    assert policy.lightning_precision("32", "auto") == "32-true"


def test_min_steps_gives_a_small_training_set_more_epochs(data_config, tmp_path):
    train_images = len(prepare(data_config, show_progress=False).split("train")[1])
    steps_per_epoch = -(-train_images // 32)
    settings = TrainConfig(model="compact_cnn", epochs=1, batch_size=32, min_steps=3 * steps_per_epoch - 1)
    out = fit(data_config, settings, tmp_path / "run", show_progress=False)
    assert [int(r["epoch"]) for r in read_metrics(out)] == [0, 1, 2]
    assert load_model(out)[1].epochs_trained == 3
    large = settings.model_copy(update={"min_steps": 1, "epochs": 2})  # already more steps than asked: unchanged
    assert len(read_metrics(fit(data_config, large, tmp_path / "large", show_progress=False))) == 2


def test_auto_loader_workers_only_beside_a_gpu(monkeypatch):
    from medkd.device import GPU_LOADER_WORKERS, loader_workers

    monkeypatch.setattr(CUDAAccelerator, "is_available", lambda: False)
    assert TrainConfig().runtime.num_workers == "auto" and loader_workers("auto", "auto") == 0  # the main process reads
    assert loader_workers(3, "auto") == 3
    monkeypatch.setattr(CUDAAccelerator, "is_available", lambda: True)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert loader_workers("auto", "auto") == GPU_LOADER_WORKERS and loader_workers("auto", "cpu") == 0
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert loader_workers("auto", "auto") == 1  # a core stays with the training process
    with pytest.raises(ValueError, match="num_workers"):
        TrainConfig(num_workers=-1)


def test_a_run_file_is_written_whole_or_not_at_all(tmp_path):
    """A writer that fails half-way (a killed process, a full disk) leaves the previous file, not half of one."""
    path = tmp_path / "model.json"
    write_json(path, {"threshold": 0.4})
    with pytest.raises(RuntimeError), staged(path) as staging:
        staging.write_text('{"thresh')
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"threshold": 0.4} and list(tmp_path.iterdir()) == [path]


def test_the_run_card_is_typed_versioned_and_refuses_what_it_cannot_read(data_config, tmp_path):
    """Every stage reads model.json through RunCard: a trained run's card round-trips; a card from before versions,
    from a newer medkd, or with a wrong entry is refused with what to do."""
    out = fit(data_config, TrainConfig(model="compact_cnn", model_args={"width": 8}, epochs=1, batch_size=16),
              tmp_path / "run", show_progress=False)
    card = RunCard.read(out)
    assert card.format == CARD_FORMAT and card.binary and card.positive_class == "PNEUMONIA"
    assert card.preprocessing == data_config.preprocessing
    assert card.ood.method == "mahalanobis" and card.calibration.fitted_on == "val" and 0 < card.threshold < 1
    raw = json.loads((out / RUN_CARD).read_text())
    for change, message in (({"format": None}, "no format version"), ({"format": CARD_FORMAT + 1}, "upgrade medkd"),
                            ({"classes": "NORMAL"}, "classes"), ({"colour": "blue"}, "colour")):
        folder = tmp_path / f"changed{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / RUN_CARD).write_text(json.dumps({k: v for k, v in {**raw, **change}.items() if v is not None}))
        with pytest.raises(CardError, match=message):
            RunCard.read(folder)
    with pytest.raises(CardError, match="missing"):
        RunCard.read(tmp_path / "nothing")
