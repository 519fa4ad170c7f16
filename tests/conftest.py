"""Shared fixtures: small generated image sets in every supported layout, and the real data when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medkd.data import DataConfig


def class_image(label: int, seed: int, size: int = 48) -> np.ndarray:
    """A grey image whose class is visible (a bright band, at a class-dependent place) under noise."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 80, (size, size), dtype=np.uint8)
    band = slice(label * size // 4, label * size // 4 + size // 4)
    image[band, :] = 200
    return image


def write_kermany_like(root: Path, splits: dict[str, int], patients_per_class: int = 6, fmt: str = "jpeg") -> Path:
    """ROOT/split/CLASS/*.fmt with Kermany-style names: several images per patient."""
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
                    Image.fromarray(class_image(label, seed)).save(folder / name)
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
