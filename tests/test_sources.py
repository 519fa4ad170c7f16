"""Every source yields the same sample table and decoded images."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import class_image, write_dicom, write_kermany_like
from medkd.data import DataConfig, DataError, available_sources, prepare
from medkd.data.sources import medmnist
from medkd.engine import TrainConfig, fit


def test_folder_with_splits_carves_patient_level_val(tmp_path, config_for):
    root = write_kermany_like(tmp_path / "xray", {"train": 3, "test": 2}, patients_per_class=10)
    data = prepare(config_for(root), show_progress=False)
    assert data.classes == ["NORMAL", "PNEUMONIA"]
    counts = data.samples["split"].value_counts().to_dict()
    assert counts["test"] == 2 * 2 * 10
    assert counts["train"] + counts["val"] == 3 * 2 * 10
    assert data.carved == ["val"]
    by_split = data.samples.groupby("split")["patient"].agg(set)
    assert not by_split["train"] & by_split["val"]
    # images landed in the cache at the configured shape, with the class band where it was drawn
    images, labels = data.split("train")
    assert images.shape[1:] == (1, 32, 32) and images.dtype == np.uint8
    normal = images[labels == 0].mean(axis=(0, 1, 3))
    assert normal[:8].mean() > normal[-8:].mean() + 50


def test_folder_without_splits_carves_test_and_val(tmp_path, config_for):
    root = tmp_path / "flat"
    for label, cls in enumerate(("benign", "malignant")):
        (root / cls).mkdir(parents=True)
        for i in range(30):
            Image.fromarray(class_image(label, i)).convert("RGB").save(root / cls / f"lesion_{label}_{i}.png")
    data = prepare(config_for(root, split={"patient_pattern": None, "min_val_size": 1}), show_progress=False)
    assert sorted(data.carved) == ["test", "val"]
    assert set(data.samples["split"]) == {"train", "val", "test"}
    assert (data.samples["split"] == "test").sum() == pytest.approx(12, abs=2)


def test_label_rules_make_three_classes(tmp_path, config_for):
    root = write_kermany_like(tmp_path / "xray", {"train": 2, "test": 1})
    for path in list((root / "train" / "PNEUMONIA").iterdir())[:4]:
        path.rename(path.with_name(path.name.replace("bacteria", "virus")))
    rules = [{"pattern": "_bacteria_", "label": "BACTERIA"}, {"pattern": "_virus_", "label": "VIRUS"}]
    data = prepare(config_for(root, classes=["NORMAL", "BACTERIA", "VIRUS"], label_rules=rules), show_progress=False)
    assert data.classes == ["NORMAL", "BACTERIA", "VIRUS"]
    assert (data.samples["label"] == 2).sum() == 4
    assert data.samples.loc[data.samples["ref"].str.contains("_virus_"), "label"].eq(2).all()


def test_dicom_monochrome_bit_depth_and_window(tmp_path, config_for):
    gradient = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (64, 1))  # full 12-bit range
    root = tmp_path / "dicom"
    write_dicom(root / "train" / "normal" / "a.dcm", gradient)
    write_dicom(root / "train" / "normal" / "b.dcm", gradient, photometric="MONOCHROME1")
    # a window on the middle of the range: below it black, above it white
    write_dicom(root / "train" / "pneumonia" / "c.dcm", gradient, WindowCenter=2048, WindowWidth=1024)
    # rescale slope/intercept to Hounsfield-like units does not change the picture without a window
    write_dicom(root / "test" / "normal" / "d.dcm", gradient, RescaleSlope=1, RescaleIntercept=-1024)
    write_dicom(root / "test" / "pneumonia" / "e.dcm", gradient)
    data = prepare(config_for(root, preprocessing={"size": 64, "channels": 1}, split={"patient_pattern": None,
                                                                                        "min_val_size": 0}),
                   show_progress=False)
    by_name = {Path(r).name: data.decoded.images[row, 0] for r, row in zip(data.samples["ref"], data.samples["row"])}
    plain = by_name["a.dcm"].astype(int)
    assert plain[:, 0].max() <= 2 and plain[:, -1].min() >= 253  # 12 bits stretched onto 0..255
    assert np.abs(by_name["b.dcm"].astype(int) - (255 - plain)).max() <= 1  # MONOCHROME1 inverted
    windowed = by_name["c.dcm"].astype(int)
    assert windowed[:, :12].max() == 0 and windowed[:, -12:].min() == 255
    assert 0 < windowed[0, 32] < 255
    assert np.abs(by_name["d.dcm"].astype(int) - plain).max() <= 1
    assert set(data.samples["mode"]) == {"DICOM MONOCHROME2 12-bit", "DICOM MONOCHROME1 12-bit"}


def write_npz(path: Path, n: dict[str, int], channels: int = 1) -> None:
    arrays = {}
    for split, count in n.items():
        labels = np.arange(count) % 2
        images = np.stack([class_image(int(y), i, 28) for i, y in enumerate(labels)])
        if channels == 3:
            images = np.repeat(images[..., None], 3, axis=-1)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels[:, None]
    np.savez(path, **arrays)


def test_medmnist_npz_keeps_official_splits_and_names_classes(tmp_path, config_for):
    write_npz(tmp_path / "pneumoniamnist.npz", {"train": 40, "val": 10, "test": 12})
    data = prepare(config_for(tmp_path / "pneumoniamnist.npz"), show_progress=False)
    assert data.classes == ["normal", "pneumonia"]
    assert data.samples["split"].value_counts().to_dict() == {"train": 40, "test": 12, "val": 10}
    assert data.carved == []


def test_medmnist_download_checks_md5_and_explains_offline(tmp_path, config_for, monkeypatch):
    payload_file = tmp_path / "payload.npz"
    write_npz(payload_file, {"train": 8, "val": 4, "test": 4}, channels=3)
    payload = payload_file.read_bytes()
    entry = {"task": "multi-class", "channels": 3, "classes": ["a", "b"],
             "files": {28: {"url": "https://example.invalid/toy.npz", "md5": medmnist._md5(payload_file)}}}
    monkeypatch.setattr(medmnist, "catalog", lambda: {"toymnist": entry})

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(medmnist.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=r"place it at .*medmnist/toymnist\.npz"):
        prepare(config_for("medmnist:toymnist"), show_progress=False)

    class Response:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def __enter__(self):
            import io
            return io.BytesIO(self.body)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(medmnist.urllib.request, "urlopen", lambda *a, **k: Response(payload[:-10]))
    with pytest.raises(DataError, match="MD5"):
        prepare(config_for("medmnist:toymnist"), show_progress=False)
    monkeypatch.setattr(medmnist.urllib.request, "urlopen", lambda *a, **k: Response(payload))
    data = prepare(config_for("medmnist:toymnist"), show_progress=False)
    assert data.classes == ["a", "b"] and len(data.samples) == 16
    with pytest.raises(DataError, match="sizes"):
        prepare(config_for("medmnist:toymnist@64"), show_progress=False)


def test_numpy_layouts_decode_to_the_same_pixels(tmp_path, config_for):
    labels = np.arange(30) % 3
    images = np.stack([np.repeat(class_image(int(y), i, 24)[..., None], 3, axis=-1) for i, y in enumerate(labels)])
    hwc = tmp_path / "hwc"
    hwc.mkdir()
    for split in ("train", "test"):
        np.save(hwc / f"X_{split}.npy", images)
        np.save(hwc / f"y_{split}.npy", labels)
    (hwc / "classes.txt").write_text("akiec\nbcc\nmel\n")
    chw = tmp_path / "chw"
    chw.mkdir()
    for split in ("train", "test"):
        np.save(chw / f"X_{split}.npy", images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
        np.save(chw / f"y_{split}.npy", np.eye(3)[labels])
    rgb = {"preprocessing": {"size": 24, "channels": 3}, "split": {"min_val_size": 1, "patient_pattern": None}}
    a = prepare(config_for(hwc, **rgb), show_progress=False)
    b = prepare(config_for(chw, **rgb), show_progress=False)
    assert a.classes == ["akiec", "bcc", "mel"]
    assert b.classes == ["0", "1", "2"]
    assert np.array_equal(a.samples["label"], b.samples["label"])
    assert np.abs(a.decoded.images.astype(int) - b.decoded.images.astype(int)).max() <= 1


def test_arrays_train_at_their_own_resolution_unless_told_and_say_so(tmp_path, caplog):
    """Another study's layout (FData/X_{train,val,test}.npy, 32 x 32 x 3 float, one-hot labels): without a size it
    trains at 32 px (model.json size 32), where it used to be silently upsampled to 224; an explicit upsampling is
    allowed and said once; image files keep the 224 px default."""
    folder = tmp_path / "FData"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, count in (("train", 48), ("val", 16), ("test", 16)):
        labels = np.arange(count) % 2
        images = np.stack([np.repeat(class_image(int(y), i, 32)[..., None], 3, axis=-1) for i, y in enumerate(labels)])
        np.save(folder / f"X_{split}.npy", (images / 255.0 + rng.normal(0, 0.01, images.shape)).astype(np.float32))
        np.save(folder / f"y_{split}.npy", np.eye(2)[labels])
    config = DataConfig.model_validate({"path": str(folder), "cache_dir": str(tmp_path / "cache"),
                                        "split": {"min_val_size": 1, "patient_pattern": None}})
    assert config.preprocessing.size is None
    with caplog.at_level("INFO", logger="medkd.data.prepared"):
        data = prepare(config, show_progress=False)
    assert data.config.preprocessing.size == 32 and data.split("train")[0].shape[1:] == (3, 32, 32)
    assert "working at 32 px (the arrays' own side" in caplog.text
    run = fit(config, TrainConfig(model="compact_cnn", model_args={"width": 8}, epochs=1, batch_size=16),
              tmp_path / "run", show_progress=False)
    sidecar = json.loads((run / "model.json").read_text())
    assert sidecar["preprocessing"]["size"] == 32 and sidecar["in_chans"] == 3
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["preprocessing"]["size"] == 32
    caplog.clear()
    bigger = config.model_copy(update={"preprocessing": config.preprocessing.model_copy(update={"size": 64})})
    with caplog.at_level("INFO", logger="medkd.data.prepared"):
        prepare(bigger, show_progress=False)
        prepare(bigger, show_progress=False)
    assert caplog.text.count("its 32 px images are upsampled to 64 px") == 1
    files = write_kermany_like(tmp_path / "xray", {"train": 2, "test": 1}, patients_per_class=10)
    unset = DataConfig.model_validate({"path": str(files), "cache_dir": str(tmp_path / "cache"),
                                       "split": {"min_val_size": 1}, "preprocessing": {"channels": 1}})
    assert prepare(unset, show_progress=False).config.preprocessing.size == 224


def test_csv_manifest_with_patients_and_splits(tmp_path, config_for):
    folder = tmp_path / "images"
    folder.mkdir()
    rows = []
    for i in range(24):
        label = "melanoma" if i % 2 else "nevus"
        Image.fromarray(class_image(i % 2, i)).save(folder / f"{i}.png")
        rows.append({"path": f"images/{i}.png", "label": label, "patient": f"p{i // 2}",
                     "split": "test" if i >= 20 else "train"})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    data = prepare(config_for(tmp_path / "manifest.csv"), show_progress=False)
    assert data.classes == ["melanoma", "nevus"]
    assert (data.samples["split"] == "test").sum() == 4
    val_patients = set(data.samples.loc[data.samples["split"] == "val", "patient"])
    train_patients = set(data.samples.loc[data.samples["split"] == "train", "patient"])
    assert val_patients and not val_patients & train_patients


def test_real_pneumoniamnist(real_data, config_for):
    data = prepare(config_for(real_data / "medmnist" / "pneumoniamnist.npz",
                              preprocessing={"size": 28, "channels": 1}), show_progress=False)
    assert data.samples["split"].value_counts().to_dict() == {"train": 4708, "test": 624, "val": 524}
    assert data.classes == ["normal", "pneumonia"]
    train = data.samples[data.samples["split"] == "train"]
    assert train["label"].value_counts().to_dict() == {1: 3494, 0: 1214}


def test_the_source_setting_is_checked_against_the_registry_in_detection_order():
    # the most specific layouts first (HDF5 slices before any CSV), any folder last
    assert available_sources() == ["hdf5", "csv", "medmnist", "nifti", "numpy", "folder"]
    with pytest.raises(ValueError, match=r"unknown data source 'dicom'.*\['hdf5', 'csv', 'medmnist', 'nifti', 'numpy', "
                                         r"'folder'\]"):
        DataConfig(path="x", source="dicom")
