"""HDF5 slices: one file per 2-D slice holding an image dataset (H, W[, C]) and optionally a mask (H, W[, K]), as
BraTS 2020 is commonly redistributed (`volume_12_slice_80.h5`: `image` (240, 240, 4), `mask` (240, 240, 3)).

`data.path` is a manifest CSV naming each slice's file with its volume (the patient) and label, or a folder of
.h5 files (with such a manifest inside it, or none: patients from the file names, labels from the masks).
Slices without brain are left out; each slice's channels are scaled by its own percentiles (data/decode.py).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, field_validator
from rich.progress import track

from medkd.data.cache import source_index
from medkd.data.config import DataConfig
from medkd.data.decode import HDF5_SUFFIXES, DecodedImage, decode_hdf5
from medkd.data.errors import DataError
from medkd.data.sources import register_source
from medkd.data.sources.csv_manifest import read_manifest, resolve_manifest_paths, source_splits
from medkd.data.sources.slices import SliceSettings, foreground_share, mask_area, mask_labels, named_labels
from medkd.data.table import FileReader, SampleTable, class_indices, file_stat

log = logging.getLogger(__name__)


class Hdf5Settings(SliceSettings):
    """The datasets inside each file and the manifest's columns (matched without regard to case)."""

    image_key: str = "image"
    mask_key: str | None = Field("mask", description="the tumour mask's dataset; null: none")
    path_column: str = "slice_path"
    patient_column: str = Field("volume", description="the volume (patient) of each slice")
    label_column: str | None = Field("target", description="the label of each slice; null, or a manifest "
                                     "without it: labels from the mask (see min_mask_area)")
    split_column: str = Field("split", description="optional: train, val or test per row")
    patient_pattern: str = Field(r"volume_(?P<patient>\d+)", description="without a manifest: the regex on the "
                                 "file name whose group 'patient' is the volume")

    @field_validator("patient_pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"not a valid regular expression: {err}") from err
        return pattern


def _has_hdf5(folder: Path) -> bool:
    return any(p.suffix.lower() in HDF5_SUFFIXES for p in folder.iterdir())


def _names_hdf5(manifest: Path) -> bool:
    """A CSV whose first row names an .h5 file."""
    try:
        with manifest.open() as file:
            file.readline()
            first = file.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return any(cell.strip().lower().endswith(tuple(HDF5_SUFFIXES)) for cell in first.split(","))


def detect_hdf5(path: str) -> bool:
    location = Path(path)
    if location.is_file():
        return location.suffix.lower() == ".csv" and _names_hdf5(location)
    return location.is_dir() and _has_hdf5(location)


class Hdf5Reader(FileReader):
    """Refs are absolute paths of slice files; their image dataset is read with `decode_hdf5`."""

    def __init__(self, root: Path, image_key: str, shape: tuple[int, ...]) -> None:
        super().__init__(root)
        self.image_key = image_key
        self.shape = shape  # the first slice's (H, W[, C]): the source's own size and channels

    def read(self, ref: str, *, max_pixels: int, draft_size: int | None) -> DecodedImage:
        return decode_hdf5(Path(ref), max_pixels=max_pixels, image_key=self.image_key, ref=self.display(ref))

    @property
    def native_size(self) -> int:
        return max(self.shape[:2])

    @property
    def native_channels(self) -> int:
        return self.shape[2] if len(self.shape) == 3 else 1


@register_source("hdf5", detect=detect_hdf5, detect_order=5, settings=Hdf5Settings)  # before csv
def load_hdf5(config: DataConfig, path: str, settings: Hdf5Settings) -> SampleTable:
    location = Path(path).resolve()
    manifest = location if location.is_file() else _manifest_in(location, settings)
    frame = _manifest_rows(manifest, settings) if manifest else _files_in(location, settings)
    root = manifest.parent if manifest else location
    index = _slice_index(config, frame["ref"].tolist(), settings)
    frame = frame.merge(index, on="ref", how="left")
    unreadable = frame["foreground"].isna()
    kept = frame[~unreadable & (frame["foreground"] >= settings.min_foreground)].copy()
    notes = []
    if unreadable.any():
        first = frame[unreadable].iloc[0]
        message = (f"{int(unreadable.sum())} of {len(frame)} slice files could not be read (first: {first['ref']}: "
                   f"{first['problem'] or 'missing'})")
        if config.on_bad_file == "fail" or unreadable.all():
            raise DataError(message + ("" if unreadable.all() else
                                       " (data.on_bad_file is 'fail'; set it to 'skip' to go on without them)"))
        notes.append(message + ": left out")
    if dropped := len(frame) - len(kept) - int(unreadable.sum()):
        notes.append(f"{dropped} of {len(frame)} slices hold no brain (non-zero share below "
                     f"{settings.min_foreground}): left out")
    if kept.empty:
        raise DataError(f"{location}: no slice holds brain ({'; '.join(notes)}); lower "
                        "data.source_settings.min_foreground if the images' background is not 0")
    if "label_name" not in kept.columns:
        if settings.mask_key is None or (kept["mask_area"] < 0).all():
            raise DataError(f"{location}: no labels: the manifest has no column {settings.label_column!r} and the "
                            f"files no mask {settings.mask_key!r}; name them in data.source_settings")
        kept["label_name"] = mask_labels(kept["mask_area"], settings)
    kept["label"], classes = class_indices(named_labels(kept["label_name"], config.classes), config.classes,
                                           str(manifest or location))
    shape = tuple(int(n) for n in str(kept["shape"].iloc[0]).split("x"))
    table = kept[["ref", "label", "patient", "source_split"]]
    log.info("%s: %d slices of %d volumes", location, len(table), table["patient"].nunique())
    return SampleTable(table, classes, Hdf5Reader(root, settings.image_key, shape),
                       origin=f"hdf5 {manifest or location}", warnings=notes, patients_known=True)


def _manifest_in(folder: Path, settings: Hdf5Settings) -> Path | None:
    """The CSV in `folder` that names .h5 files, if there is one (several: an error that names them)."""
    candidates = [p for p in sorted(folder.glob("*.csv")) if _names_hdf5(p)]
    if len(candidates) > 1:
        raise DataError(f"{folder}: several manifests name .h5 files ({[p.name for p in candidates]}): pass the one "
                        "to use as --data")
    return candidates[0] if candidates else None


def _manifest_rows(manifest: Path, settings: Hdf5Settings) -> pd.DataFrame:
    """ref, patient, source_split and (with a label column) label_name, one row per manifest row."""
    frame = read_manifest(manifest)
    path_column, patient_column = settings.path_column.lower(), settings.patient_column.lower()
    missing = [c for c in (path_column, patient_column) if c not in frame.columns]
    if missing:
        raise DataError(f"{manifest}: no column(s) {missing} (it has {list(frame.columns)}); name the slice file and "
                        "volume columns in data.source_settings (path_column, patient_column)")
    rows = pd.DataFrame({"ref": resolve_manifest_paths(frame[path_column].tolist(), manifest),
                         "patient": frame[patient_column].str.strip().to_numpy()})
    label_column = (settings.label_column or "").lower()
    if label_column in frame.columns:
        rows["label_name"] = frame[label_column].to_numpy()
    rows["source_split"] = source_splits(frame, settings.split_column.lower(), manifest)
    return rows


def _files_in(folder: Path, settings: Hdf5Settings) -> pd.DataFrame:
    """The folder's .h5 files, patients from their names (settings.patient_pattern)."""
    files = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in HDF5_SUFFIXES)
    pattern = re.compile(settings.patient_pattern)
    patients = []
    for file in files:
        match = pattern.search(Path(file).name)
        if match is None:
            raise DataError(f"{file}: its name does not match data.source_settings.patient_pattern "
                            f"{settings.patient_pattern!r}; without a manifest every slice must name its volume")
        patients.append(match.groupdict().get("patient") or (match.group(1) if match.groups() else match.group(0)))
    return pd.DataFrame({"ref": files, "patient": patients, "source_split": None})


def _slice_index(config: DataConfig, refs: list[str], settings: Hdf5Settings) -> pd.DataFrame:
    """Per slice file: its share of non-zero pixels, its mask's area (-1: no mask) and its shape "HxWxC";
    computed once (a pass over every file), then cached."""
    identity = {"source": "hdf5", "files": [file_stat(Path(ref)) for ref in refs], "image_key": settings.image_key,
                "mask_key": settings.mask_key}
    return source_index(config, identity, lambda: _read_index(refs, settings))


def _read_index(refs: list[str], settings: Hdf5Settings) -> pd.DataFrame:
    import h5py

    rows = []
    for ref in track(refs, description="reading the slices' masks", transient=True, disable=len(refs) < 1000):
        try:
            with h5py.File(ref, "r") as file:
                if settings.image_key not in file:
                    raise KeyError(f"no dataset {settings.image_key!r} (it has {sorted(file.keys())}): name the "
                                   "image dataset in data.source_settings.image_key")
                values = np.asarray(file[settings.image_key][()])
                area = (mask_area(file[settings.mask_key][()])
                        if settings.mask_key and settings.mask_key in file else -1)
        except (OSError, KeyError) as err:
            problem = err.args[0] if isinstance(err, KeyError) else f"not a readable HDF5 file ({err})"
            rows.append((ref, np.nan, -1, "", problem))
            continue
        values = values[..., None] if values.ndim == 2 else values
        rows.append((ref, foreground_share(values), area, "x".join(map(str, values.shape)), ""))
    return pd.DataFrame(rows, columns=["ref", "foreground", "mask_area", "shape", "problem"])
