"""A generated BraTS-like cohort, for tests and for trying the MRI recipes without the real data: brain-shaped
volumes of four modalities (T1, T1ce, T2, FLAIR) with one tumour each (necrotic core, oedema and, for high
grade, an enhancing rim), written in the two layouts BraTS 2020 comes in (see data/sources/hdf5_slices.py and
nifti_volumes.py). Nothing here is real anatomy: it has the files' structure, not the data's difficulty."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

MODALITIES = ("t1", "t1ce", "t2", "flair")
# Tissue intensities per modality (arbitrary scanner units): brain, tumour core, oedema, enhancing rim.
_BRAIN = np.array([600.0, 620.0, 900.0, 500.0])
_CORE = np.array([350.0, 400.0, 1500.0, 700.0])
_OEDEMA = np.array([520.0, 560.0, 1300.0, 1000.0])
_RIM = np.array([650.0, 1300.0, 1100.0, 900.0])
BRATS_LABELS = {"core": 1, "oedema": 2, "rim": 4}  # the segmentation's values, as in BraTS


@dataclass(frozen=True)
class Patient:
    """One generated patient: modalities (X, Y, Z, 4) float32 in RAS+, segmentation (X, Y, Z) uint8, grade."""

    name: str
    volumes: np.ndarray
    segmentation: np.ndarray
    grade: str


def generate_patient(index: int, *, side: int, depth: int, rng: np.random.Generator) -> Patient:
    """A brain ellipsoid with one tumour somewhere in it; each modality with its own gain (scanners differ) and
    noise. High grade (about two in three) has an enhancing rim in T1ce."""
    x, y, z = np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side), np.linspace(-1, 1, depth),
                          indexing="ij")
    brain = (x / 0.8) ** 2 + (y / 0.9) ** 2 + (z / 0.85) ** 2 <= 1
    centre = rng.uniform([-0.4, -0.4, -0.5], [0.4, 0.4, 0.5])
    radius = rng.uniform(0.15, 0.3)
    distance = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) / radius
    high_grade = rng.random() < 2 / 3
    segmentation = np.zeros(brain.shape, np.uint8)
    segmentation[brain & (distance < 1.6)] = BRATS_LABELS["oedema"]
    segmentation[brain & (distance < 1.0)] = BRATS_LABELS["rim"] if high_grade else BRATS_LABELS["core"]
    segmentation[brain & (distance < 0.7)] = BRATS_LABELS["core"]
    volumes = np.zeros((*brain.shape, len(MODALITIES)), np.float32)
    for tissue, values in ((brain, _BRAIN), (segmentation == 2, _OEDEMA), (segmentation == 4, _RIM),
                           (segmentation == 1, _CORE)):
        volumes[tissue] = values
    gain = rng.uniform(0.6, 1.6, len(MODALITIES))
    noise = rng.normal(0, 60, volumes.shape)
    volumes = np.where(brain[..., None], (volumes + noise) * gain, 0).astype(np.float32)
    return Patient(f"BraTS20_Training_{index:03d}", volumes, segmentation, "HGG" if high_grade else "LGG")


def write_brats_like(folder: str | Path, layout: Literal["hdf5", "nifti"], *, patients: int = 20, side: int = 48,
                     depth: int = 24, seed: int = 0) -> Path:
    """Write a generated cohort in one of BraTS 2020's layouts; returns what `--data` takes.

    Parameters
    ----------
    folder : str or Path
        Created if missing.
    layout : {"hdf5", "nifti"}
        hdf5: FOLDER/data/volume_{i}_slice_{k}.h5 (image (side, side, 4) float64, mask (side, side, 3) uint8:
        core, oedema, rim) and FOLDER/data/meta_data.csv (slice_path as written on the machine that made it,
        /content/data/..., target = tumour in the slice, volume, slice); nifti: FOLDER/BraTS20_Training_{i:03d}/
        with one .nii.gz per modality and _seg.nii.gz (LPS-oriented, as BraTS's), and FOLDER/name_mapping.csv
        (Grade, BraTS_2020_subject_ID).
    patients, side, depth, seed : int
        Cohort size, volume shape (side, side, depth), random seed.

    Returns
    -------
    Path
        The hdf5 layout's manifest folder (FOLDER/data) or the nifti layout's FOLDER.
    """
    rng = np.random.default_rng(seed)
    root = Path(folder)
    cohort = [generate_patient(i + 1, side=side, depth=depth, rng=rng) for i in range(patients)]
    if layout == "hdf5":
        return _write_hdf5(root / "data", cohort)
    return _write_nifti(root, cohort)


def _write_hdf5(folder: Path, cohort: list[Patient]) -> Path:
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for volume, patient in enumerate(cohort, start=1):
        masks = np.stack([patient.segmentation == BRATS_LABELS[t] for t in ("core", "oedema", "rim")], axis=-1)
        for k in range(patient.volumes.shape[2]):
            name = f"volume_{volume}_slice_{k}.h5"
            with h5py.File(folder / name, "w") as file:
                file["image"] = patient.volumes[:, :, k].astype(np.float64)
                file["mask"] = masks[:, :, k].astype(np.uint8)
            rows.append((f"/content/data/{name}", int(masks[:, :, k].any()), volume, k))
    pd.DataFrame(rows, columns=["slice_path", "target", "volume", "slice"]).to_csv(folder / "meta_data.csv",
                                                                                     index=False)
    return folder


def _write_nifti(root: Path, cohort: list[Patient]) -> Path:
    import nibabel as nib

    lps = np.diag([-1.0, -1.0, 1.0, 1.0])  # BraTS's volumes are stored LPS: readers turn them to RAS+
    for patient in cohort:
        folder = root / patient.name
        folder.mkdir(parents=True, exist_ok=True)
        # stored LPS: the RAS+ arrays flipped along x and y
        for c, modality in enumerate(MODALITIES):
            stored = patient.volumes[::-1, ::-1, :, c].round().astype(np.int16)
            nib.save(nib.Nifti1Image(stored, lps), folder / f"{patient.name}_{modality}.nii.gz")
        nib.save(nib.Nifti1Image(patient.segmentation[::-1, ::-1], lps), folder / f"{patient.name}_seg.nii.gz")
    pd.DataFrame({"Grade": [p.grade for p in cohort], "BraTS_2020_subject_ID": [p.name for p in cohort]}).to_csv(
        root / "name_mapping.csv", index=False)
    return root
