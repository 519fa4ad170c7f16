"""NIfTI volumes: one folder per patient holding one volume per modality and optionally a segmentation, as BraTS
ships them (`BraTS20_Training_001/BraTS20_Training_001_{t1,t1ce,t2,flair,seg}.nii.gz`), read with nibabel.

Every volume is turned to its closest canonical orientation (RAS+, as nibabel reports it) and its scaling
(scl_slope, scl_inter) applied; the samples are its 2-D slices along `axis`, shown anterior (or superior) up.
Slices without brain, or outside `slice_range`, are left out. Labels come per patient from a CSV (e.g. grade in
BraTS's name_mapping.csv) or per slice from the segmentation (tumour present). Each modality is scaled by the
percentiles of its whole volume (data/decode.py), the same at training and at prediction.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field
from rich.progress import track

from medkd.data.cache import source_index
from medkd.data.config import INTENSITY_PERCENTILES, DataConfig
from medkd.data.decode import DecodedImage, content_hash, percentile_ranges, scaled_planes
from medkd.data.errors import BadImageError, DataError
from medkd.data.sources import register_source
from medkd.data.sources.slices import SliceSettings, foreground_share, mask_area, mask_labels, named_labels
from medkd.data.table import ImageReader, SampleTable, class_indices, file_stat

log = logging.getLogger(__name__)
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SLICE_SEPARATOR = "#"  # a ref is PATIENT_FOLDER#SLICE
VOLUMES_KEPT = 4  # decoded volumes held in memory: slices are decoded patient by patient, by a few threads


class NiftiSettings(SliceSettings):
    """Which files are the channels, how volumes become slices, where labels come from."""

    modalities: list[str] = Field(["t1", "t1ce", "t2", "flair"], min_length=1, description="the channels, in "
                                  "order: each the patient's file named *_MODALITY.nii[.gz] (case ignored)")
    segmentation: str | None = Field("seg", description="the segmentation's name (*_seg.nii.gz); null: none")
    axis: Literal[0, 1, 2] = Field(2, description="slicing axis in RAS+: 0 sagittal, 1 coronal, 2 axial")
    slice_range: tuple[int, int] | None = Field(None, description="keep slices first <= index < last only")
    labels_csv: str | None = Field(None, description="per-patient labels: a CSV (relative to the data folder), "
                                   "e.g. name_mapping.csv; null: labels per slice from the segmentation")
    patient_column: str = "BraTS_2020_subject_ID"
    label_column: str = "Grade"


def _volume_file(folder: Path, name: str) -> Path | None:
    suffix = re.compile(rf"[_-]{re.escape(name)}\.nii(\.gz)?$", re.IGNORECASE)
    matches = [p for p in folder.iterdir() if suffix.search(p.name)]
    return matches[0] if len(matches) == 1 else None


def _patient_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and any(f.name.lower().endswith(NIFTI_SUFFIXES) for f in p.iterdir()))


def detect_nifti(path: str) -> bool:
    location = Path(path)
    return location.is_dir() and bool(_patient_folders(location))


def load_canonical(file: Path) -> np.ndarray:
    """A volume as float32 in its closest canonical (RAS+) orientation, its scaling applied: what nibabel
    reports as `as_closest_canonical(img).get_fdata()`. A 4-D file keeps its first volume."""
    import nibabel as nib

    try:
        image = nib.as_closest_canonical(nib.load(file))
    except Exception as err:  # nibabel raises many types on damaged files
        raise BadImageError(str(file), f"not a readable NIfTI volume ({err})", "check the file is complete") from None
    if image.ndim == 4:
        image = image.slicer[..., 0]
    if image.ndim != 3:
        raise BadImageError(str(file), f"a NIfTI image of {image.ndim} dimensions", "expected a 3-D volume")
    return np.asarray(image.get_fdata(dtype=np.float32))


def slices_of(volume: np.ndarray, axis: int) -> np.ndarray:
    """The 2-D slices of a RAS+ volume (X, Y, Z[, C]) along `axis`, as (n, H, W[, C]) shown the way viewers do:
    anterior (axial, sagittal) or superior (coronal) up, rows from the top."""
    moved = np.moveaxis(volume, axis, 0)  # (n, a, b[, C]): a, b the remaining axes in RAS order
    return np.flip(np.swapaxes(moved, 1, 2), axis=1)  # rows along b (top: its + end), columns along a


def stacked_modalities(patient: str, files: list[Path], settings: NiftiSettings) -> np.ndarray:
    """A patient's modalities as one RAS+ volume (X, Y, Z, C) float32, C in the order of settings.modalities
    (`files` in that order, the segmentation after them if any)."""
    volumes = [load_canonical(file) for file in files[:len(settings.modalities)]]
    if len({v.shape for v in volumes}) > 1:
        raise BadImageError(patient, f"its modalities have different shapes {[v.shape for v in volumes]}",
                            "co-register (resample) them to one grid")
    return np.stack(volumes, axis=-1)


def scaled_slices(stacked: np.ndarray, settings: NiftiSettings) -> np.ndarray:
    """The slices (n, H, W, C) uint8 of a volume (X, Y, Z, C), each modality scaled by the percentiles of the
    whole volume (INTENSITY_PERCENTILES)."""
    scaled = scaled_planes(stacked, percentile_ranges(stacked, INTENSITY_PERCENTILES))
    return np.ascontiguousarray(slices_of(scaled, settings.axis))


def patient_files(folder: Path, settings: NiftiSettings) -> list[Path] | None:
    """The folder's volume per modality, then its segmentation (when the settings name one); None when one of
    them is missing or ambiguous."""
    wanted = settings.modalities + ([settings.segmentation] if settings.segmentation else [])
    found = [_volume_file(folder, name) for name in wanted]
    return None if any(file is None for file in found) else [file for file in found if file is not None]


def kept_slices(indices: np.ndarray, foreground: np.ndarray, settings: NiftiSettings) -> np.ndarray:
    """Which slices a nifti source keeps (training and prediction alike): brain in at least min_foreground of the
    slice, and an index within slice_range when one is set. A boolean mask beside `indices` (slice numbers) and
    `foreground` (each slice's share of non-zero pixels)."""
    keep = foreground >= settings.min_foreground
    if settings.slice_range is not None:
        first, last = settings.slice_range
        keep &= (indices >= first) & (indices < last)
    return keep


def volume_slices(folder: str | Path, settings: dict, *, slices: list[int] | None = None,
                  max_pixels: int) -> list[tuple[int, DecodedImage]]:
    """A patient folder's slices as the nifti source reads them in training (`settings`: its source settings, as
    a run card records them): those holding brain within the slice range, or exactly `slices`.

    Returns
    -------
    list of (slice index, DecodedImage)

    Raises
    ------
    BadImageError
        For a folder without every modality, volumes that do not share a grid, or a slice index out of range.
    """
    folder, parsed = Path(folder), NiftiSettings.model_validate(settings)
    wanted = parsed.modalities  # the segmentation is not needed to predict
    files = patient_files(folder, parsed.model_copy(update={"segmentation": None}))
    if files is None:
        raise BadImageError(str(folder), f"not a patient folder with one *_{'/'.join(wanted)}.nii[.gz] each",
                            "pass the folder of one patient's volumes (or a folder of such folders)")
    stacked = stacked_modalities(folder.name, files, parsed)
    side = max(stacked.shape[a] for a in range(3) if a != parsed.axis)
    if side * side > max_pixels:
        raise BadImageError(str(folder), f"slices of {side} x {side} pixels, above the limit of {max_pixels:,}",
                            "raise the pixel limit if the volume is genuine")
    raw, scaled = slices_of(stacked, parsed.axis), scaled_slices(stacked, parsed)
    if slices is None:
        shares = np.array([foreground_share(plane) for plane in raw])
        chosen = np.flatnonzero(kept_slices(np.arange(len(raw)), shares, parsed)).tolist()
    else:
        outside = [k for k in slices if not 0 <= k < len(raw)]
        if outside:
            raise BadImageError(str(folder), f"slices {outside} are outside 0..{len(raw) - 1}",
                                "choose slices within the volume")
        chosen = list(slices)
    return [(k, DecodedImage.from_planes(scaled[k], f"NIfTI x{scaled.shape[-1]}", content_hash(scaled[k].tobytes()),
                                         note=f"slice {k} of {len(raw)} along axis {parsed.axis}")) for k in chosen]


def is_patient_folder(path: str | Path, settings: dict) -> bool:
    """Whether `path` is a folder holding every modality named by `settings` (a nifti source's settings)."""
    parsed = NiftiSettings.model_validate(settings)
    return Path(path).is_dir() and patient_files(Path(path), parsed.model_copy(update={"segmentation": None})) \
        is not None


class NiftiReader(ImageReader):
    """Refs are PATIENT_FOLDER#SLICE; a patient's volumes are decoded (scaled to 8 bits) once and kept while its
    slices are read."""

    def __init__(self, root: Path, files: dict[str, list[Path]], settings: NiftiSettings,
                 shape: tuple[int, int]) -> None:
        self.root, self.files, self.settings, self.shape = root, files, settings, shape
        self._volumes: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def _slices(self, patient: str) -> np.ndarray:
        """The patient's slices (n, H, W, C) uint8, each modality scaled by its volume's percentiles."""
        with self._lock:
            if patient in self._volumes:
                self._volumes.move_to_end(patient)
                return self._volumes[patient]
            stacked = stacked_modalities(patient, self.files[patient], self.settings)
            self._volumes[patient] = scaled_slices(stacked, self.settings)
            if len(self._volumes) > VOLUMES_KEPT:
                self._volumes.popitem(last=False)
            return self._volumes[patient]

    def read(self, ref: str, *, max_pixels: int, draft_size: int | None) -> DecodedImage:
        patient, index = ref.rsplit(SLICE_SEPARATOR, 1)
        planes = self._slices(patient)[int(index)]
        return DecodedImage.from_planes(planes, f"NIfTI x{planes.shape[-1]}", content_hash(planes.tobytes()))

    def fingerprint(self, refs: list[str]) -> list:
        return [file_stat(file) for patient in sorted(self.files) for file in self.files[patient]]

    def display(self, ref: str) -> str:
        try:
            return str(Path(ref).relative_to(self.root))
        except ValueError:
            return ref

    @property
    def native_size(self) -> int:
        return max(self.shape)

    @property
    def native_channels(self) -> int:
        return len(self.settings.modalities)


@register_source("nifti", detect=detect_nifti, detect_order=20, settings=NiftiSettings)
def load_nifti(config: DataConfig, path: str, settings: NiftiSettings) -> SampleTable:
    root = Path(path).resolve()
    files, problems = {}, []
    wanted = settings.modalities + ([settings.segmentation] if settings.segmentation else [])
    for folder in _patient_folders(root):
        found = patient_files(folder, settings)
        if found is None:
            missing = [name for name in wanted if _volume_file(folder, name) is None]
            problems.append(f"{folder.name}: no single *_{'/'.join(missing)}.nii[.gz]")
            continue
        files[str(folder)] = found
    if not files:
        raise DataError(f"{root}: no patient folder holds every volume {wanted} ({'; '.join(problems[:3])}); name "
                        "the modalities and segmentation in data.source_settings")
    index = source_index(config, {"source": "nifti", "files": [file_stat(f) for fs in files.values() for f in fs],
                                  "settings": settings.model_dump(mode="json")},
                         lambda: _read_index(files, settings))
    index["patient"] = index["patient"].astype(str)
    kept = index[kept_slices(index["slice"].to_numpy(), index["foreground"].to_numpy(), settings)]
    notes = [f"{p}: left out" for p in problems]
    notes.append(f"{len(kept)} of {len(index)} slices kept (brain in at least {settings.min_foreground:.0%} of the "
                 f"slice{', within the slice range' if settings.slice_range else ''})")
    if kept.empty:
        raise DataError(f"{root}: no slice kept ({notes[-1]}); lower min_foreground or widen slice_range")
    frame = pd.DataFrame({"ref": kept["patient"] + SLICE_SEPARATOR + kept["slice"].astype(str),
                          "patient": kept["patient"].map(lambda p: Path(p).name), "source_split": None})
    if settings.labels_csv:
        names = _patient_labels(root / settings.labels_csv, settings, set(frame["patient"]))
        frame["label_name"] = frame["patient"].map(names)
        unlabelled = frame["label_name"].isna()
        if unlabelled.any():
            notes.append(f"{frame.loc[unlabelled, 'patient'].nunique()} patients have no label in "
                         f"{settings.labels_csv}: left out")
            frame = frame[~unlabelled]
    else:
        if not settings.segmentation:
            raise DataError(f"{root}: no labels: set data.source_settings.labels_csv (per patient) or "
                            "segmentation (labels per slice from the mask)")
        frame["label_name"] = mask_labels(kept["mask_area"], settings).to_numpy()
    frame["label"], classes = class_indices(named_labels(frame["label_name"], config.classes), config.classes,
                                            str(root))
    shape = tuple(int(n) for n in str(index["shape"].iloc[0]).split("x"))
    reader = NiftiReader(root, files, settings, (shape[0], shape[1]))
    return SampleTable(frame.drop(columns="label_name"), classes, reader, origin=f"nifti {root}", warnings=notes,
                       patients_known=True)


def _patient_labels(table: Path, settings: NiftiSettings, patients: set[str]) -> pd.Series:
    """Label name by patient folder name, from a per-patient CSV."""
    try:
        frame = pd.read_csv(table, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"{table}: not a readable CSV ({err}); check data.source_settings.labels_csv") from None
    missing = [c for c in (settings.patient_column, settings.label_column) if c not in frame.columns]
    if missing:
        raise DataError(f"{table}: no column(s) {missing} (it has {list(frame.columns)}); name them in "
                        "data.source_settings (patient_column, label_column)")
    labels = frame.set_index(settings.patient_column)[settings.label_column]
    if not patients & set(labels.index):
        raise DataError(f"{table}: none of its {settings.patient_column} values names a patient folder (e.g. "
                        f"{sorted(patients)[0]})")
    return labels


def _read_index(files: dict[str, list[Path]], settings: NiftiSettings) -> pd.DataFrame:
    """Per slice of every patient: its share of non-zero pixels, its mask's area (-1: no segmentation) and the
    volume's slice shape "HxW"."""
    frames = []
    for patient, volume_files in track(files.items(), description="reading the volumes", transient=True,
                                       disable=len(files) < 20):
        modalities = slices_of(stacked_modalities(patient, volume_files, settings), settings.axis)
        areas = ([mask_area(plane) for plane in slices_of(load_canonical(volume_files[-1]), settings.axis)]
                 if settings.segmentation else [-1] * len(modalities))
        frames.append(pd.DataFrame({
            "patient": patient, "slice": np.arange(len(modalities)),
            "foreground": [foreground_share(plane) for plane in modalities], "mask_area": areas,
            "shape": "x".join(map(str, modalities.shape[1:3]))}))
    return pd.concat(frames, ignore_index=True)
