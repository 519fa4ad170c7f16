"""The one thing every data source yields: a table of samples, class names, and a reader of pixels."""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from medkd.data.config import MAX_CHANNELS
from medkd.data.decode import DecodedImage, content_hash, decode_file, scaled_planes, stretch_to_uint8
from medkd.data.errors import DataError

SPLITS = ("train", "val", "test")
# Folder and manifest spellings of the splits.
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
COLUMNS = ("ref", "label", "patient", "source_split")


class ImageReader(abc.ABC):
    """Gives the pixels behind a sample's `ref`."""

    @abc.abstractmethod
    def read(self, ref: str, *, max_pixels: int, draft_size: int | None) -> DecodedImage:
        """Decode one sample or raise BadImageError."""

    @abc.abstractmethod
    def fingerprint(self, refs: list[str]) -> list:
        """JSON-able identity of the bytes behind `refs` (paths, sizes, mtimes) for the decode cache key."""

    def display(self, ref: str) -> str:
        """How a ref is shown to a person."""
        return ref

    @property
    def native_size(self) -> int | None:
        """The side of the source's own images where they all share one (arrays), else None (files of any size)."""
        return None

    @property
    def native_channels(self) -> int | None:
        """The channel count the source's images all share where it knows it without decoding (arrays, MRI
        modalities), else None (image files: grey or RGB, whichever each file is)."""
        return None


def file_stat(path: Path) -> list:
    """[path, size, mtime_ns], or [path, None, None] for a file that is missing."""
    try:
        stat = os.stat(path)
    except OSError:
        return [str(path), None, None]
    return [str(path), stat.st_size, stat.st_mtime_ns]


class FileReader(ImageReader):
    """Samples are image or DICOM files; refs are absolute paths."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, ref: str, *, max_pixels: int, draft_size: int | None) -> DecodedImage:
        return decode_file(Path(ref), max_pixels=max_pixels, draft_size=draft_size, ref=self.display(ref))

    def fingerprint(self, refs: list[str]) -> list:
        return [file_stat(Path(ref)) for ref in refs]

    def display(self, ref: str) -> str:
        try:
            return str(Path(ref).relative_to(self.root))
        except ValueError:
            return ref


class ArrayReader(ImageReader):
    """Samples are rows of in-memory arrays per split; refs are 'split/index'."""

    def __init__(self, images: dict[str, np.ndarray], files: list[Path]) -> None:
        self.images = {split: _to_hwc(array, split) for split, array in images.items()}
        self.files = files
        # grey and RGB arrays map one range onto 0..255; other channel counts (modalities) one range per channel
        self._ranges = {split: [_value_range(array)] if _channels(array) in (1, 3)
                        else [_value_range(array[..., c]) for c in range(array.shape[-1])]
                        for split, array in self.images.items()}

    def read(self, ref: str, *, max_pixels: int, draft_size: int | None) -> DecodedImage:
        split, index = ref.split("/")
        row = np.asarray(self.images[split][int(index)])
        ranges, digest, mode = self._ranges[split], content_hash(row.tobytes()), f"array {row.dtype}"
        if len(ranges) > 1:  # neither grey nor RGB: one plane per channel
            planes = row if row.dtype == np.uint8 else scaled_planes(row, np.array(ranges))
            return DecodedImage.from_planes(planes, mode, digest)
        eight_bit = row if row.dtype == np.uint8 else stretch_to_uint8(row, *ranges[0])
        if eight_bit.ndim == 3 and eight_bit.shape[-1] == 1:
            eight_bit = eight_bit[..., 0]
        image = Image.fromarray(np.ascontiguousarray(eight_bit), mode="L" if eight_bit.ndim == 2 else "RGB")
        return DecodedImage(image, mode, (row.shape[1], row.shape[0]), digest)

    def fingerprint(self, refs: list[str]) -> list:
        return [file_stat(path) for path in self.files]

    @property
    def native_size(self) -> int:
        """The arrays' largest side (H, W of (N, H, W[, C]) arrays), over every split."""
        return max(max(array.shape[1:3]) for array in self.images.values())

    @property
    def native_channels(self) -> int:
        """C of (N, H, W, C) arrays (1 for (N, H, W)); every split must have the same."""
        counts = {split: _channels(array) for split, array in self.images.items()}
        if len(set(counts.values())) > 1:
            raise DataError(f"the splits' images have different channel counts {counts}: give every split the same")
        return next(iter(counts.values()))


def _channels(array: np.ndarray) -> int:
    return 1 if array.ndim == 3 else array.shape[-1]


def _to_hwc(array: np.ndarray, split: str) -> np.ndarray:
    """Images as (N, H, W) or (N, H, W, C): channel-first arrays are transposed (lazily). C is the smaller of the
    two candidate axes and at most MAX_CHANNELS (a 4-channel array is 4 modalities, not RGBA)."""
    if array.ndim == 3:
        return array
    if array.ndim == 4:
        if array.shape[-1] <= min(MAX_CHANNELS, array.shape[1]):
            return array
        if array.shape[1] <= MAX_CHANNELS:
            return array.transpose(0, 2, 3, 1)
    raise DataError(f"{split} images have shape {array.shape}: expected (N, H, W), (N, H, W, C) or (N, C, H, W) "
                    f"with C at most {MAX_CHANNELS}")


def _value_range(array: np.ndarray) -> tuple[float, float]:
    """The range mapped onto 0..255 for non-uint8 arrays: [0, 1] and [0, 255] data keep their meaning."""
    if array.dtype == np.uint8 or array.size == 0:
        return 0.0, 255.0
    if array.dtype == np.bool_:
        return 0.0, 1.0
    low, high = float(np.nanmin(array)), float(np.nanmax(array))
    if low >= 0 and high <= 1:
        return 0.0, 1.0
    if low >= 0 and high <= 255:
        return 0.0, 255.0
    return low, high


@dataclass
class SampleTable:
    """Samples (columns ref, label, patient, source_split), class names and the reader of their pixels."""

    samples: pd.DataFrame
    classes: list[str]
    reader: ImageReader
    origin: str
    warnings: list[str] = field(default_factory=list)
    patients_known: bool = True
    source: str = ""  # the registered source that read it, with its settings (set by open_source)
    source_settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in COLUMNS if c not in self.samples.columns]
        if missing:
            raise ValueError(f"sample table lacks columns {missing}")
        if len(self.samples) == 0:
            raise DataError(f"{self.origin}: no images found")
        labels = self.samples["label"].to_numpy()
        if labels.min() < 0 or labels.max() >= len(self.classes):
            raise DataError(f"{self.origin}: labels outside 0..{len(self.classes) - 1} for classes {self.classes}")
        self.samples = self.samples.reset_index(drop=True)


def class_indices(names: pd.Series | list[str], classes: list[str] | None, origin: str) -> tuple[np.ndarray, list[str]]:
    """Map label names to indices in `classes` (default: the sorted names found), naming any unknown label."""
    names = pd.Series(names, dtype=str)
    found = sorted(names.unique())
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(
            f"{origin}: labels {unknown} are not in the class list {classes}; "
            "add them to data.classes or correct the labels"
        )
    lookup = {name: index for index, name in enumerate(classes)}
    return names.map(lookup).to_numpy(dtype=np.int64), list(classes)
