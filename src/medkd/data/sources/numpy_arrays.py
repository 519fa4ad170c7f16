"""NumPy arrays: X_{train,val,test}.npy with y_*.npy (ints or one-hot), optional patient_*.npy and classes.txt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medkd.data.config import DataConfig
from medkd.data.errors import DataError
from medkd.data.sources import register_source
from medkd.data.table import SPLITS, ArrayReader, SampleTable
from medkd.settings import StrictModel


def _is_numpy_folder(path: str) -> bool:
    return Path(path).is_dir() and (Path(path) / "X_train.npy").exists()


@register_source("numpy", detect=_is_numpy_folder, detect_order=30)
def load_numpy(config: DataConfig, path: str, settings: StrictModel) -> SampleTable:
    root = Path(path).resolve()
    images, labels, patients, files = {}, {}, {}, []
    for split in SPLITS:
        x_file, y_file = root / f"X_{split}.npy", root / f"y_{split}.npy"
        if not x_file.exists():
            continue
        if not y_file.exists():
            raise DataError(f"{x_file} has no labels: add {y_file.name} beside it")
        images[split] = _load(x_file, mmap=True)
        labels[split] = integer_labels(_load(y_file), y_file)
        if len(images[split]) != len(labels[split]):
            raise DataError(
                f"{x_file.name} holds {len(images[split])} images but {y_file.name} holds {len(labels[split])} labels: "
                "they must have the same length"
            )
        patient_file = root / f"patient_{split}.npy"
        if patient_file.exists():
            patients[split] = _load(patient_file).astype(str)
            files.append(patient_file)
        files += [x_file, y_file]
    if "train" not in images:
        raise DataError(f"{root}: no X_train.npy")
    classes = _classes(root, config, max(int(y.max(initial=0)) for y in labels.values()) + 1)
    frames = []
    for split, y in labels.items():
        bad = np.flatnonzero((y < 0) | (y >= len(classes)))
        if len(bad):
            raise DataError(
                f"y_{split}.npy: labels {sorted(set(y[bad].tolist()))[:10]} (rows {bad[:10].tolist()}) are outside "
                f"the {len(classes)} classes {classes}; fix the labels or the class list"
            )
        refs = [f"{split}/{i}" for i in range(len(y))]
        frames.append(pd.DataFrame({
            "ref": refs, "label": y, "source_split": split,
            "patient": patients[split] if split in patients else [f"{split}-{i}" for i in range(len(y))],
        }))
    warnings = [] if patients else ["no patient_*.npy: every image counts as its own patient"]
    return SampleTable(pd.concat(frames), classes, ArrayReader(images, files), origin=f"numpy {root}",
                       warnings=warnings, patients_known=bool(patients))


def _load(file: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{file}: not a readable .npy array ({err})") from None


def integer_labels(y: np.ndarray, where: Path | str) -> np.ndarray:
    """Labels as int64 of shape (N,), from ints (N,) / (N, 1) or one-hot (N, K)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise DataError(f"{where}: 2-D labels are not one-hot (each row one 1); multi-label data is not supported")
        return y.argmax(axis=1).astype(np.int64)
    if y.ndim != 1:
        raise DataError(f"{where}: labels have shape {y.shape}; expected (N,), (N, 1) or one-hot (N, K)")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.mod(y, 1) == 0):
            raise DataError(f"{where}: labels must be whole numbers (class indices), found {y.dtype} values")
    return y.astype(np.int64)


def _classes(root: Path, config: DataConfig, found: int) -> list[str]:
    if config.classes:
        return list(config.classes)
    names_file = root / "classes.txt"
    if names_file.exists():
        return [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    return [str(i) for i in range(found)]
