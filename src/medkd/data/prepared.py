"""The data pipeline in one call: source -> decode once -> bad-file policy -> patient-level splits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from medkd.data.cache import DecodedImages, decode_all
from medkd.data.config import DEFAULT_CHANNELS, DEFAULT_FILE_SIZE, DataConfig, cache_root
from medkd.data.errors import DataError
from medkd.data.sources import open_source
from medkd.data.splits import assign_splits, linked_groups
from medkd.data.table import SPLITS, SampleTable
from medkd.files import bytes_fingerprint

log = logging.getLogger(__name__)
_UPSAMPLING_LOGGED: set[tuple[str, int, int]] = set()  # said once per process, however often the data is prepared


@dataclass
class PreparedData:
    """Samples with their final split and their row in `images` (N, C, H, W, uint8, memory-mapped)."""

    config: DataConfig
    source: SampleTable
    decoded: DecodedImages
    samples: pd.DataFrame  # ref, label, patient, source_split, split, row, width, height, mode, content_hash
    skipped: pd.DataFrame  # ref, problem: files left out under on_bad_file: skip
    carved: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return self.source.classes

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Images (n, C, H, W) uint8 and labels (n,) of one split, read into memory."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {name!r}")
        chosen = self.samples[self.samples["split"] == name]
        rows = chosen["row"].to_numpy()
        labels = chosen["label"].to_numpy(dtype=np.int64, copy=True)
        return np.asarray(self.decoded.images[rows]), labels

    def split_fingerprint(self, name: str) -> str:
        """Identity of one split's decoded images (decode cache + rows), for caches of what is computed from them."""
        rows = self.samples.loc[self.samples["split"] == name, "row"].to_numpy()
        return f"{self.decoded.folder.name}:{bytes_fingerprint(rows.tobytes())}"


def opened(config: DataConfig) -> tuple[SampleTable, DataConfig]:
    """The source's sample table and `config` with its preprocessing resolved from the data where it is unset.

    size: the images' own side for array sources (NumPy, MedMNIST, HDF5, NIfTI: no silent resampling),
    DEFAULT_FILE_SIZE for image files; an explicit size above an array source's own side is an upsampling,
    allowed and logged once. channels: the data's own count where it is neither 1 nor 3 (MRI modalities), else
    DEFAULT_CHANNELS; an explicit count the data does not have fails before anything is decoded.
    """
    source = open_source(config)
    native, size = source.reader.native_size, config.preprocessing.size
    native_channels, channels = source.reader.native_channels, config.preprocessing.channels
    update: dict = {}
    if size is None:
        update["size"] = native or DEFAULT_FILE_SIZE
        log.info("%s: working at %d px (%s; set data.preprocessing.size to change it)", source.origin,
                 update["size"], "the arrays' own side" if native else "the default for image files")
    elif native and size > native and (source.origin, native, size) not in _UPSAMPLING_LOGGED:
        _UPSAMPLING_LOGGED.add((source.origin, native, size))
        log.info("%s: its %d px images are upsampled to %d px (data.preprocessing.size: %d); leave size unset to "
                 "work at their own resolution", source.origin, native, size, size)
    multi_channel = native_channels is not None and native_channels not in (1, 3)
    if channels is None:
        update["channels"] = native_channels if multi_channel else DEFAULT_CHANNELS
        if multi_channel:
            log.info("%s: %d input channels, the data's own", source.origin, native_channels)
    elif multi_channel and channels != native_channels:
        raise DataError(f"{source.origin}: data.preprocessing.channels is {channels} but the images have "
                        f"{native_channels} channels; leave it unset (or choose the source's channels in its "
                        "settings, e.g. the MRI modalities)")
    elif native_channels is not None and not multi_channel and channels not in (1, 3):
        raise DataError(f"{source.origin}: data.preprocessing.channels is {channels} but the images are "
                        f"{'grey' if native_channels == 1 else 'RGB'}: use 1 or 3, or leave it unset")
    if update:
        config = config.model_copy(update={"preprocessing": config.preprocessing.model_copy(update=update)})
    return source, config


def resolve_preprocessing(config: DataConfig) -> DataConfig:
    """`config` with preprocessing size and channels set as `opened` resolves them (unchanged when both are)."""
    settings = config.preprocessing
    return config if settings.size is not None and settings.channels is not None else opened(config)[1]


def prepare(config: DataConfig, *, show_progress: bool = True) -> PreparedData:
    """Open the source, decode (or load from cache) every image, apply the bad-file policy, split by patient.
    The returned data's config has its working size resolved (see `opened`)."""
    source, config = opened(config)
    decoded = decode_all(source, config, show_progress=show_progress)
    info = decoded.info.drop(columns="ref")
    samples = pd.concat([source.samples, info], axis=1)
    samples["row"] = np.arange(len(samples))
    skipped = decoded.info.loc[~decoded.info["ok"], ["ref", "problem"]].reset_index(drop=True)
    if len(skipped):
        log.warning("%d unreadable files skipped (data.on_bad_file: skip)", len(skipped))
    samples = samples[samples["ok"]].drop(columns=["ok", "problem"]).reset_index(drop=True)
    empty = [c for i, c in enumerate(source.classes) if not (samples["label"] == i).any()]
    if empty:
        raise DataError(f"{source.origin}: no readable images of class(es) {empty}; "
                        "every class needs images to train on")
    groups = linked_groups(samples["patient"], samples["content_hash"])
    samples, carved, notes = assign_splits(samples, groups, config.split, cache_root(config), source.classes)
    return PreparedData(config, source, decoded, samples, skipped, carved, notes)


def unlabelled_images(config: DataConfig, *, exclude_source_splits: tuple[str, ...] = ("test",),
                      show_progress: bool = True) -> np.ndarray:
    """Every readable image of the source except those of `exclude_source_splits` (labels ignored), for
    self-supervised pretraining. Excluded files are never opened: they are dropped before decoding."""
    source, config = opened(config)
    kept = source.samples[~source.samples["source_split"].isin(exclude_source_splits)]
    if kept.empty:
        raise DataError(f"{source.origin}: no images outside the {', '.join(exclude_source_splits)} split(s)")
    table = SampleTable(kept, source.classes, source.reader, source.origin, source.warnings, source.patients_known)
    decoded = decode_all(table, config, show_progress=show_progress)
    ok = decoded.info["ok"].to_numpy()
    if (~ok).any():
        log.warning("%d unreadable files skipped (data.on_bad_file: skip)", int((~ok).sum()))
    return np.asarray(decoded.images[np.flatnonzero(ok)])


def labelled_images(config: DataConfig, *, show_progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every readable image of the source with its label, whatever its split and without splitting (a site's
    calibration set, however few its patients): images (N, C, H, W) uint8, labels (N,), class names."""
    source, config = opened(config)
    decoded = decode_all(source, config, show_progress=show_progress)
    ok = decoded.info["ok"].to_numpy()
    if (~ok).any():
        log.warning("%d unreadable files skipped (data.on_bad_file: skip)", int((~ok).sum()))
    labels = source.samples["label"].to_numpy(dtype=np.int64)[ok]
    return np.asarray(decoded.images[np.flatnonzero(ok)]), labels, list(source.classes)
