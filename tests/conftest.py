"""Shared fixtures: small generated image sets in every supported layout, one small trained run, and the real
data when present."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pydicom
import pytest
import yaml
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medkd.data import DataConfig
from medkd.engine import TrainConfig, fit


def class_image(label: int, seed: int, size: int = 48, band_level: int = 200) -> np.ndarray:
    """A grey image whose class is visible (a band of grey `band_level`, at a class-dependent place) under noise
    (grey 0-79): clear at 200, hard to see near 40."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 80, (size, size), dtype=np.uint8)
    band = slice(label * size // 4, label * size // 4 + size // 4)
    image[band, :] = np.maximum(image[band, :], band_level) if band_level < 80 else band_level
    return image


def write_kermany_like(root: Path, splits: dict[str, int], patients_per_class: int = 6, fmt: str = "jpeg",
                       band_level: int = 200) -> Path:
    """ROOT/split/CLASS/*.fmt with Kermany-style names: several images per patient (see class_image)."""
    seed = 0
    for split, per_patient in splits.items():
        for label, cls in enumerate(("NORMAL", "PNEUMONIA")):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for p in range(patients_per_class):
                pid = p + (1000 if split == "test" else 0)
                for k in range(per_patient):
                    seed += 1
                    name = f"IM-{pid:04d}-{k:04d}.{fmt}" if label == 0 else f"person{pid}_bacteria_{seed}.{fmt}"
                    Image.fromarray(class_image(label, seed, band_level=band_level)).save(folder / name)
    return root


def kermany_like_config(root: Path, patients_per_class: int) -> DataConfig:
    """A small generated Kermany-like set under `root` (32 px grey, private cache) ready to train on."""
    data = write_kermany_like(root / "xray", {"train": 4, "test": 2}, patients_per_class=patients_per_class)
    return DataConfig.model_validate({"path": str(data), "cache_dir": str(root / "cache"),
                                      "preprocessing": {"size": 32, "channels": 1}, "split": {"min_val_size": 1}})


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 12, **attributes) -> None:
    """A minimal grey DICOM image (explicit VR little endian) with the given pixels and attributes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID = path.stem
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def cache_dir(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


@pytest.fixture
def config_for(cache_dir: str):
    """DataConfig for a path, with a private cache and small settings unless overridden."""

    def make(path: Path | str, **settings) -> DataConfig:
        settings.setdefault("preprocessing", {"size": 32, "channels": 1})
        settings.setdefault("split", {"min_val_size": 1})
        return DataConfig.model_validate({"path": str(path), "cache_dir": cache_dir, **settings})

    return make


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real data folder named by MEDKD_DATA. CI always sets it: there, its absence is a failure."""
    root = os.environ.get("MEDKD_DATA")
    if root and (Path(root) / "chest_xray").is_dir():
        return Path(root)
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide the real data: MEDKD_DATA={root!r} holds no chest_xray folder")
    pytest.skip("real data absent: set MEDKD_DATA to the folder holding chest_xray/ and medmnist/")


class TrainedRun(NamedTuple):
    folder: Path  # a finished run folder
    config: DataConfig  # the data it was trained on


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainedRun:
    """A compact CNN trained 2 epochs on generated Kermany-like X-rays (32 px grey, 20 patients a class and split),
    shared by every test that needs a finished run: they may add files (evaluation, export), never change its own."""
    root = tmp_path_factory.mktemp("trained")
    config = kermany_like_config(root, patients_per_class=20)
    settings = TrainConfig(model="compact_cnn", model_args={"width": 8}, epochs=2, batch_size=32)
    return TrainedRun(fit(config, settings, root / "run", show_progress=False), config)


def tiny_recipe(tmp_path: Path) -> Path:
    """A study recipe over generated data: a teacher, its KD student listed first, the student's matched
    control and a baseline; one epoch each at 32 px."""
    data = write_kermany_like(tmp_path / "xray", {"train": 3, "test": 2}, patients_per_class=10)
    recipe = {
        "name": "tiny",
        "data": {"path": str(data), "cache_dir": str(tmp_path / "cache"), "preprocessing": {"size": 32, "channels": 1},
                 "split": {"min_val_size": 1}},
        "train": {"model": "compact_cnn", "model_args": {"width": 8}, "epochs": 1, "batch_size": 16, "precision": "32"},
        "evaluation": {"bootstrap_resamples": 20},
        "stages": [  # the student is listed before its teacher on purpose
            {"name": "student_kd", "distill": {"teachers": ["teacher"], "temperature": 2.0}},
            {"name": "teacher", "train": {"model_args": {"width": 16}}},
            {"name": "control"},  # the student's training settings without a teacher: its matched control
            {"name": "baseline", "train": {"model": "baseline_cnn", "model_args": {"width": 4, "hidden": 16}}},
        ],
        "presets": {"two_seeds": {"seeds": 2}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path
