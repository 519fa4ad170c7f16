"""DICOM as scanners send it, on pydicom's own test files: compressed transfer syntaxes decode through the
installed pixel-data plugins to the same image as uncompressed copies; signed 16-bit, YBR colour, palette colour,
VOI LUT and windowing hold on compressed data; multi-frame files give their first frame with a note; pydicom's
own log and warnings stay out of the user's console."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from medkd.data import BadImageError, decode_bytes, decode_file

MAX_PIXELS = 50_000_000
# The compressed transfer syntaxes a radiology department sends; pylibjpeg's plugins (libjpeg, openjpeg, rle),
# dependencies of medkd, decode them all.
COMPRESSED = [JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless,
              JPEG2000Lossless, JPEG2000, RLELossless]


def decoded(name: str) -> np.ndarray:
    """A file of pydicom's test corpus as medkd decodes it (8-bit grey or RGB)."""
    return np.asarray(decode_file(Path(get_testdata_file(name)), max_pixels=MAX_PIXELS).image).astype(int)


@pytest.mark.parametrize("syntax", COMPRESSED, ids=lambda uid: uid.name)
def test_every_compressed_syntax_has_an_installed_decoder(syntax):
    assert "pylibjpeg" in get_decoder(syntax).available_plugins, f"no pylibjpeg plugin decodes {syntax.name}"


def test_lossless_compressed_files_decode_to_the_uncompressed_image():
    # MR_small: signed 16-bit with a window, as stored uncompressed and as JPEG-LS, JPEG 2000 and RLE
    original = decoded("MR_small.dcm")
    for name in ("MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm",
                 "MR_small_bigendian.dcm"):
        assert np.array_equal(decoded(name), original), name
    # an RGB image as RLE (8, 16 and 32 bits, one and two frames) and as JPEG lossless (.70)
    rgb = decoded("SC_rgb_rle.dcm")
    for name in ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle_16bit.dcm", "SC_rgb_rle_32bit.dcm", "SC_rgb_rle_2frame.dcm"):
        assert np.array_equal(decoded(name), rgb), name


def test_ybr_colour_jpeg_decodes_to_the_rgb_image():
    rgb = decoded("SC_rgb_dcmtk_+eb+cr.dcm")  # JPEG baseline stored as RGB
    for name in ("SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_dcmtk_+eb+cy+n2.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm",
                 "SC_rgb_dcmtk_+eb+cy+s2.dcm", "SC_rgb_dcmtk_+eb+cy+s4.dcm"):  # the same as YBR_FULL(_422)
        ybr = decoded(name)
        assert ybr.shape == rgb.shape == (100, 100, 3)
        assert np.abs(ybr - rgb).mean() < 4, name  # lossy JPEG: 0.6 to 2.8 grey levels measured


def test_palette_colour_becomes_rgb():
    image = decode_file(Path(get_testdata_file("examples_palette.dcm")), max_pixels=MAX_PIXELS)
    pixels = np.asarray(image.image).astype(int)
    assert image.image.mode == "RGB" and image.original_mode == "DICOM PALETTE COLOR 8-bit"
    assert np.abs(pixels[..., 0] - pixels[..., 2]).mean() > 5  # coloured through the palette, not grey indices


def test_multi_frame_gives_its_first_frame_with_a_note():
    cine = decode_file(Path(get_testdata_file("examples_ybr_color.dcm")), max_pixels=MAX_PIXELS)
    assert cine.note == "multi-frame DICOM (30 frames): the first frame was used"
    first = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm")).pixel_array[0]  # pydicom: YBR -> RGB
    assert np.abs(np.asarray(cine.image).astype(int) - first).max() <= 1
    assert decode_file(Path(get_testdata_file("MR_small.dcm")), max_pixels=MAX_PIXELS).note is None


def signed_ct(syntax=None, **attributes) -> bytes:
    """pydicom's CT_small (signed 16-bit, rescaled to HU) with `attributes`, compressed to `syntax`."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    if syntax is not None:
        ds.compress(syntax)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def hounsfield() -> np.ndarray:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


@pytest.mark.parametrize("syntax", [None, JPEG2000Lossless, RLELossless], ids=["uncompressed", "j2k", "rle"])
def test_window_and_voi_lut_on_signed_16_bit(syntax):
    hu = hounsfield()
    assert hu.min() < -500 and hu.max() > 500  # the data covers both sides of the window and the LUT's step
    window = decode_bytes(signed_ct(syntax, WindowCenter=40, WindowWidth=400), "ct", max_pixels=MAX_PIXELS)
    windowed = np.asarray(window.image).astype(int)
    assert windowed[hu < -160].max() == 0 and windowed[hu > 240].min() == 255  # soft-tissue window in HU
    assert np.all(np.diff(windowed.ravel()[np.argsort(hu, axis=None)]) >= 0)  # brighter with HU, inside too

    lut = Dataset()  # a VOI LUT from HU -1024 on: black below 0 HU, white from 0 HU
    lut.add_new(0x00283002, "SS", [4096, -1024, 16])  # LUT Descriptor: entries, first input value, bits
    lut.add_new(0x00283006, "US", [0] * 1024 + [4095] * 3072)  # LUT Data
    voi = np.asarray(decode_bytes(signed_ct(syntax, VOILUTSequence=[lut]), "ct", max_pixels=MAX_PIXELS).image)
    assert np.array_equal(voi, np.where(hu >= 0, 255, 0))


class Records(logging.Handler):
    """What reaches a handler of the root logger (as the console's handler in `medkd`)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_decoder_failures_go_to_the_debug_log_not_the_console(caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="medkd")  # the medkd command may have set it to INFO in this process
    console = Records()
    logging.getLogger().addHandler(console)
    try:
        with pytest.raises(BadImageError) as refused:
            decode_file(Path(get_testdata_file("JPEG-lossy.dcm")), max_pixels=MAX_PIXELS)  # damaged 12-bit JPEG
    finally:
        logging.getLogger().removeHandler(console)
    reason = str(refused.value)
    assert "\n" not in reason and "JPEG Extended (Process 2 and 4) (1.2.840.10008.1.2.4.51)" in reason
    assert "pylibjpeg: libjpeg error" in reason and "export it again" in reason
    assert not [r for r in console.records if r.name.startswith("pydicom")]
    debug = [r for r in console.records if r.name == "medkd.data.decode"]
    assert debug and all(r.levelno == logging.DEBUG for r in debug)
    assert any("libjpeg error" in r.getMessage() and r.exc_info for r in debug)  # with its traceback, for -v
