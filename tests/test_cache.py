"""Decode once: the cache is reused while nothing changes, and rebuilt when a file or a setting does."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from conftest import write_kermany_like
from medkd.data import Preprocessing, prepare, preprocess
from medkd.data import table as table_module


def test_second_run_reads_no_image(tmp_path, config_for, monkeypatch):
    root = write_kermany_like(tmp_path / "xray", {"train": 2, "test": 1})
    first = prepare(config_for(root), show_progress=False)
    assert not first.decoded.reused

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded although the cache holds it")

    monkeypatch.setattr(table_module, "decode_file", no_decoding)
    second = prepare(config_for(root), show_progress=False)
    assert second.decoded.reused
    assert isinstance(second.decoded.images, np.memmap)
    assert np.array_equal(np.asarray(first.decoded.images), np.asarray(second.decoded.images))


def test_changed_file_or_setting_rebuilds(tmp_path, config_for):
    root = write_kermany_like(tmp_path / "xray", {"train": 2, "test": 1})
    base = prepare(config_for(root), show_progress=False).decoded.folder
    bigger = prepare(config_for(root, preprocessing={"size": 40, "channels": 1}), show_progress=False)
    assert bigger.decoded.folder != base and bigger.decoded.images.shape[-1] == 40
    some_file = next((root / "train" / "NORMAL").iterdir())
    stat = some_file.stat()
    os.utime(some_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = prepare(config_for(root), show_progress=False)
    assert touched.decoded.folder != base and not touched.decoded.reused


@pytest.mark.parametrize("policy", ["squash", "pad", "crop"])
def test_resize_policies_on_a_wide_image(policy):
    wide = Image.new("L", (200, 100), color=255)
    out = preprocess(wide, Preprocessing(size=50, channels=3, resize=policy))
    assert out.shape == (3, 50, 50) and out.dtype == np.uint8
    rows = out[0].mean(axis=1)
    if policy == "pad":  # aspect kept: black bars above and below a 50 x 25 picture
        assert rows[:10].max() == 0 and rows[-10:].max() == 0 and rows[25] == 255
    else:  # squash stretches, crop cuts the sides: both fill the square
        assert rows.min() == 255
