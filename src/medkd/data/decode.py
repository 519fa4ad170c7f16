"""Turn one file or array row into an 8-bit image (grey, RGB, or C planes of 8 bits: MRI modalities), or say
precisely why not."""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medkd.data.config import INTENSITY_PERCENTILES
from medkd.data.errors import BadImageError, NotAnImageError, TooManyPixelsError
from medkd.files import bytes_fingerprint

log = logging.getLogger(__name__)
DICOM_SUFFIXES = {".dcm", ".dicom"}
HDF5_SUFFIXES = {".h5", ".hdf5"}  # one slice per file: a (H, W[, C]) dataset (MRI slices as often redistributed)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"} | DICOM_SUFFIXES | HDF5_SUFFIXES
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # the first bytes of an HDF5 file (without a user block)
HDF5_IMAGE_KEY = "image"  # the dataset read from an HDF5 file when no other is named (BraTS redistributions')
# PIL modes that already hold 8-bit grey or colour pixels and only need a mode conversion.
_EIGHT_BIT_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
# Pillow refuses images above 2 x Image.MAX_IMAGE_PIXELS (the user's setting, 89M pixels by default) before medkd
# can read their size; medkd enforces data.max_pixels itself, from the header, before any pixel is decoded. Such
# an image is read again with Pillow's limit lifted for that read alone, under this lock (decoding runs in threads).
_PILLOW_LIMIT = threading.Lock()


class _ToDebugLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log.debug("%s: %s", record.name, record.getMessage(), exc_info=record.exc_info)


def pydicom_messages_to_debug_log() -> None:
    """Send pydicom's log records and warnings to medkd's debug log (the `medkd` command does; a program using
    medkd as a library keeps pydicom's own behaviour). pydicom logs each failed decoder plugin at ERROR with a
    traceback, and each oddity it tolerates as a warning; medkd reports one reason per file instead."""
    pydicom_log = logging.getLogger("pydicom")
    if not any(isinstance(handler, _ToDebugLog) for handler in pydicom_log.handlers):
        pydicom_log.addHandler(_ToDebugLog())
    pydicom_log.propagate = False  # a logger's own filters never see its children's records: stop them here
    # pydicom issues every warning through its logger too (pydicom.misc.warn_and_log), so it is in the debug log
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")


DICOM_ATTRIBUTES = ("Modality", "BodyPartExamined")  # what an image is of, as the scanner says


@dataclass(frozen=True)
class DecodedImage:
    """An 8-bit image (PIL mode L or RGB) with what was seen of the original.

    Images whose channels are neither grey nor RGB (C co-registered MRI modalities) also carry `planes`: one
    8-bit grey image per channel, in channel order; `image` is then their first, for people to look at.
    """

    image: Image.Image
    original_mode: str
    original_size: tuple[int, int]
    content_hash: str
    note: str | None = None  # what a person should know about the decoding, e.g. the frame used
    dicom: dict[str, str] | None = None  # a DICOM file's DICOM_ATTRIBUTES (those it has), for the deployment checks
    planes: tuple[Image.Image, ...] | None = None  # one mode-L image per channel, for C-channel images

    @property
    def channels(self) -> int:
        """The image's own channel count: its planes', else 1 (grey) or 3 (RGB)."""
        return len(self.planes) if self.planes is not None else len(self.image.getbands())

    @classmethod
    def from_planes(cls, planes: np.ndarray, original_mode: str, content_hash: str,
                    note: str | None = None) -> DecodedImage:
        """A C-channel image from uint8 `planes` of shape (H, W, C)."""
        grey = tuple(Image.fromarray(np.ascontiguousarray(planes[..., c]), mode="L") for c in range(planes.shape[-1]))
        return cls(grey[0], original_mode, (planes.shape[1], planes.shape[0]), content_hash, note, planes=grey)


def is_image_candidate(path: Path) -> bool:
    """A file that may be an image: a known suffix, or none (DICOM files often have no extension)."""
    return (path.is_file() and not path.name.startswith(".")
            and (path.suffix.lower() in IMAGE_SUFFIXES or path.suffix == ""))


def content_hash(data: bytes) -> str:
    """Hash that identifies exact duplicates (same bytes)."""
    return bytes_fingerprint(data, length=40)


def decode_file(path: Path, *, max_pixels: int, draft_size: int | None = None, ref: str | None = None,
                image_key: str | None = None) -> DecodedImage:
    """Decode an image file (JPEG, PNG, BMP, TIFF, DICOM, or an HDF5 slice: dataset `image_key`) to 8 bits.

    `draft_size` lets JPEG decoding skip resolution not needed for a square of that side.
    """
    ref = ref or str(path)
    if path.suffix.lower() in HDF5_SUFFIXES:
        return decode_hdf5(path, max_pixels=max_pixels, ref=ref, image_key=image_key)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadImageError(ref, "file not found", "check the path in the manifest") from None
    except OSError as err:
        raise BadImageError(ref, f"cannot read the file: {err.strerror}", "check its permissions") from None
    return decode_bytes(data, ref, max_pixels=max_pixels, draft_size=draft_size,
                        dicom=path.suffix.lower() in DICOM_SUFFIXES)


def decode_bytes(data: bytes, ref: str, *, max_pixels: int, draft_size: int | None = None,
                 dicom: bool = False, image_key: str | None = None) -> DecodedImage:
    """Decode an image's bytes (JPEG, PNG, BMP, TIFF, DICOM: `dicom`, or found by its preamble; an HDF5 slice,
    found by its signature: dataset `image_key`) to 8 bits."""
    if not data:
        raise NotAnImageError(ref, "empty file (0 bytes)", "re-export the image or remove the file")
    if data.startswith(HDF5_SIGNATURE):
        return decode_hdf5(io.BytesIO(data), max_pixels=max_pixels, ref=ref, image_key=image_key)
    digest = content_hash(data)
    if dicom or data[128:132] == b"DICM":
        return _decode_dicom(data, ref, max_pixels, digest)
    return _decode_pil(data, ref, max_pixels, draft_size, digest)


def _decode_pil(data: bytes, ref: str, max_pixels: int, draft_size: int | None, digest: str) -> DecodedImage:
    try:
        return _read_pil(data, ref, max_pixels, draft_size, digest)
    except Image.DecompressionBombError:
        with _pillow_limit_lifted():
            return _read_pil(data, ref, max_pixels, draft_size, digest)


@contextmanager
def _pillow_limit_lifted() -> Iterator[None]:
    """Pillow's decompression-bomb limit off for the block, then back to what it was."""
    with _PILLOW_LIMIT:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _read_pil(data: bytes, ref: str, max_pixels: int, draft_size: int | None, digest: str) -> DecodedImage:
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise NotAnImageError(ref, "not an image file that can be read (unknown format)",
                              "remove it or convert it to PNG/JPEG") from None
    except (OSError, ValueError, SyntaxError) as err:  # a known format whose header is cut or broken
        raise BadImageError(ref, f"truncated or corrupt image header ({err})",
                            "re-export the image or remove the file") from None
    width, height = image.size
    _check_pixels(ref, width, height, max_pixels)
    mode = image.mode
    if draft_size is not None and image.format == "JPEG":
        image.draft(image.mode, (draft_size, draft_size))
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as err:
        raise BadImageError(ref, f"truncated or corrupt image data ({err})",
                            "re-export the image or remove the file") from None
    return DecodedImage(_to_eight_bit(image), mode, (width, height), digest)


def _check_pixels(ref: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise TooManyPixelsError(
            ref,
            f"{width} x {height} = {width * height:,} pixels, above the limit of {max_pixels:,} "
            "(possible decompression bomb)",
            "raise data.max_pixels if the image is genuine",
        )


def _to_eight_bit(image: Image.Image) -> Image.Image:
    if image.mode in _EIGHT_BIT_MODES:
        if image.mode in {"1", "L", "LA"}:
            return image.convert("L")
        return image.convert("RGB")
    # 16-bit, 32-bit integer and float images: stretch their own range onto 0..255.
    return Image.fromarray(stretch_to_uint8(np.asarray(image)))


def stretch_to_uint8(values: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Map [low, high] (default: the array's own range) linearly onto 0..255."""
    values = np.asarray(values, dtype=np.float64)
    low = float(np.nanmin(values)) if low is None else low
    high = float(np.nanmax(values)) if high is None else high
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.clip(values, low, high) - low) * (255.0 / (high - low))
    return np.nan_to_num(scaled).round().astype(np.uint8)


def decode_hdf5(source: Path | io.BytesIO, *, max_pixels: int, image_key: str | None = None,
                ref: str | None = None) -> DecodedImage:
    """One image from an HDF5 file (a path, or its bytes): dataset `image_key` (default HDF5_IMAGE_KEY, or the
    file's only 2-D or 3-D dataset) of shape (H, W) or (H, W, C), each channel scaled by `percentile_ranges` of
    this slice alone (a slice served alone is scaled as in training)."""
    import h5py

    ref = ref or str(source)
    try:
        with h5py.File(source, "r") as file:
            dataset = _hdf5_image(file, image_key, ref)
            if len(dataset.shape) not in (2, 3):
                raise BadImageError(ref, f"dataset {dataset.name} has shape {dataset.shape}",
                                    "expected one slice: (H, W) or (H, W, C)")
            _check_pixels(ref, dataset.shape[1], dataset.shape[0], max_pixels)
            values = np.asarray(dataset[()])
    except FileNotFoundError:
        raise BadImageError(ref, "file not found", "check the path in the manifest") from None
    except OSError as err:  # h5py's for a file that is not HDF5 or is cut short
        raise BadImageError(ref, f"not a readable HDF5 file ({one_line(err)})",
                            "check the file is complete, or remove it") from None
    if values.ndim == 2:
        values = values[..., None]
    planes = scaled_planes(values, percentile_ranges(values, INTENSITY_PERCENTILES))
    digest, mode = content_hash(values.tobytes()), f"HDF5 {values.dtype} x{values.shape[-1]}"
    if planes.shape[-1] == 1:
        return DecodedImage(Image.fromarray(planes[..., 0], mode="L"), mode, (values.shape[1], values.shape[0]), digest)
    return DecodedImage.from_planes(planes, mode, digest)


def _hdf5_image(file, key: str | None, ref: str):
    import h5py

    if key is not None or HDF5_IMAGE_KEY in file:
        key = key or HDF5_IMAGE_KEY
        if key not in file or not isinstance(file[key], h5py.Dataset):
            raise BadImageError(ref, f"no dataset {key!r} (it has {sorted(file.keys())})",
                                "name the image dataset in data.source_settings.image_key")
        return file[key]
    candidates = [item for item in file.values() if isinstance(item, h5py.Dataset) and item.ndim in (2, 3)]
    if len(candidates) != 1:
        raise BadImageError(ref, f"no dataset {HDF5_IMAGE_KEY!r} and {len(candidates)} image-shaped datasets "
                            f"({sorted(file.keys())})", "name the image dataset in data.source_settings.image_key")
    return candidates[0]


def percentile_ranges(values: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """Per channel, the `percentiles` of its non-zero finite values (the background of a skull-stripped MRI is 0).

    Parameters
    ----------
    values : np.ndarray of shape (..., C)
        One slice (H, W, C) or a whole volume (D, H, W, C) of any numeric type.
    percentiles : (float, float)
        Low and high, in 0..100.

    Returns
    -------
    np.ndarray of shape (C, 2), float64
        (low, high) per channel; (0, 0) for a channel without non-zero values.
    """
    ranges = np.zeros((values.shape[-1], 2))
    for channel in range(values.shape[-1]):
        plane = np.asarray(values[..., channel], dtype=np.float64)
        foreground = plane[np.isfinite(plane) & (plane != 0)]
        if foreground.size:
            ranges[channel] = np.percentile(foreground, percentiles)
    return ranges


def scaled_planes(values: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """`values` (..., C) with channel c's range `ranges[c]` mapped onto 0..255 (clipped): uint8 (..., C)."""
    return np.stack([stretch_to_uint8(values[..., c], *ranges[c]) for c in range(values.shape[-1])], axis=-1)


def _decode_dicom(data: bytes, ref: str, max_pixels: int, digest: str) -> DecodedImage:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        raise NotAnImageError(ref, "not a DICOM file (no 'DICM' marker after its 128-byte preamble)",
                              "remove it, or export it again as a DICOM file") from None
    except Exception as err:  # pydicom raises many types on damaged files
        raise BadImageError(ref, f"unreadable DICOM ({one_line(err)})",
                            "check the file is a complete DICOM image") from None
    if "PixelData" not in ds:
        raise NotAnImageError(ref, f"DICOM file holds no pixel data (SOP class: {_sop_class(ds)})",
                              "remove it from the image folder")
    try:
        rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
        bits = int(ds.get("BitsStored", 8))
    except (TypeError, ValueError) as err:
        raise BadImageError(ref, f"invalid DICOM image header ({one_line(err)})",
                            "export the image again from its source") from None
    _check_pixels(ref, columns, rows, max_pixels)
    ds.pixel_array_options(index=0)  # decode the first frame only (one image per file)
    try:
        pixels = ds.pixel_array
    except Exception as err:  # pydicom raises many types for missing codecs and broken pixel data
        raise _undecodable(ds, ref, err) from None
    note = f"multi-frame DICOM ({frames} frames): the first frame was used" if frames > 1 else None
    attributes = {name: str(ds.get(name)).strip() for name in DICOM_ATTRIBUTES if ds.get(name)}
    original_mode = f"DICOM {photometric} {bits}-bit"
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
        bits = np.iinfo(pixels.dtype).bits  # the palette's own entries span their whole type
    if pixels.ndim == 3:  # colour DICOM: pydicom already converted YBR to RGB
        rgb = Image.fromarray(stretch_to_uint8(pixels, 0, 2**bits - 1)).convert("RGB")
        return DecodedImage(rgb, original_mode, (columns, rows), digest, note, attributes)

    values = apply_modality_lut(pixels, ds)
    if "VOILUTSequence" in ds:
        # A LUT is indexed by whole input values; its output spans its own range.
        eight_bit = stretch_to_uint8(apply_voi_lut(np.rint(values).astype(np.int64), ds))
    elif "WindowCenter" in ds:
        # The window's output range depends on bit depth and signedness: pass the extremes through it.
        extremes = np.array([values.min() - 1e9, values.max() + 1e9], dtype=np.float64)
        low, high = np.sort(apply_voi_lut(extremes, ds))
        eight_bit = stretch_to_uint8(apply_voi_lut(values, ds), float(low), float(high))
    else:
        eight_bit = stretch_to_uint8(values)
    if photometric == "MONOCHROME1":  # MONOCHROME1 shows low values as white
        eight_bit = 255 - eight_bit
    return DecodedImage(Image.fromarray(eight_bit, mode="L"), original_mode, (columns, rows), digest, note,
                        attributes)


def one_line(err: Exception) -> str:
    """An exception's message on one line (pydicom lists each failed decoder plugin on a line of its own)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:1] + ["; ".join(lines[1:])]).strip() or type(err).__name__


def _sop_class(ds) -> str:
    uid = ds.get("SOPClassUID") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
    return "unknown" if uid is None else uid.name


def _undecodable(ds, ref: str, err: Exception) -> BadImageError:
    """Why pydicom could not decode the pixel data, and what the user can do about it."""
    from pydicom.pixels import get_decoder

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        return BadImageError(ref, "DICOM file does not say how its pixel data is encoded (no Transfer Syntax UID)",
                             "export it again with its file meta information")
    encoding = f"{syntax.name} ({syntax})" if syntax.name != str(syntax) else f"transfer syntax {syntax}"
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return BadImageError(ref, f"pydicom has no decoder for {encoding}",
                             "convert the file to an uncompressed transfer syntax (e.g. gdcmconv --raw, dcmdjpeg)")
    if not decoder.is_available:
        return BadImageError(ref, f"no decoder installed for {encoding}",
                             "install one: " + "; ".join(decoder.missing_dependencies))
    return BadImageError(ref, f"cannot decode DICOM pixel data, {encoding}: {one_line(err)}",
                         "the file is damaged or its header does not match its pixel data: export it again")
