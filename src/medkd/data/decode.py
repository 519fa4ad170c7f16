"""Turn one file or array row into an 8-bit grey or RGB PIL image, or say precisely why not."""

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

from medkd.data.errors import BadImageError, NotAnImageError, TooManyPixelsError
from medkd.files import bytes_fingerprint

log = logging.getLogger(__name__)
DICOM_SUFFIXES = {".dcm", ".dicom"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"} | DICOM_SUFFIXES
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
    """An 8-bit image (PIL mode L or RGB) with what was seen of the original."""

    image: Image.Image
    original_mode: str
    original_size: tuple[int, int]
    content_hash: str
    note: str | None = None  # what a person should know about the decoding, e.g. the frame used
    dicom: dict[str, str] | None = None  # a DICOM file's DICOM_ATTRIBUTES (those it has), for the deployment checks


def is_image_candidate(path: Path) -> bool:
    """A file that may be an image: a known suffix, or none (DICOM files often have no extension)."""
    return (path.is_file() and not path.name.startswith(".")
            and (path.suffix.lower() in IMAGE_SUFFIXES or path.suffix == ""))


def content_hash(data: bytes) -> str:
    """Hash that identifies exact duplicates (same bytes)."""
    return bytes_fingerprint(data, length=40)


def decode_file(path: Path, *, max_pixels: int, draft_size: int | None = None, ref: str | None = None) -> DecodedImage:
    """Decode an image file (JPEG, PNG, BMP, TIFF or DICOM) to 8 bits.

    `draft_size` lets JPEG decoding skip resolution not needed for a square of that side.
    """
    ref = ref or str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadImageError(ref, "file not found", "check the path in the manifest") from None
    except OSError as err:
        raise BadImageError(ref, f"cannot read the file: {err.strerror}", "check its permissions") from None
    return decode_bytes(data, ref, max_pixels=max_pixels, draft_size=draft_size,
                        dicom=path.suffix.lower() in DICOM_SUFFIXES)


def decode_bytes(data: bytes, ref: str, *, max_pixels: int, draft_size: int | None = None,
                 dicom: bool = False) -> DecodedImage:
    """Decode an image's bytes (JPEG, PNG, BMP, TIFF, or DICOM: `dicom`, or found by its preamble) to 8 bits."""
    if not data:
        raise NotAnImageError(ref, "empty file (0 bytes)", "re-export the image or remove the file")
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
