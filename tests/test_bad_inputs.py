"""Bad input never crashes deep in a loader: each bad file is named with what is wrong and what to do."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import class_image, write_kermany_like
from medkd.data import DataError, check_data, prepare


def huge_png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def salt(folder: Path) -> dict[str, str]:
    """Write broken files and awkward-but-valid ones into `folder`; returns broken name -> expected problem."""
    (folder / "zero_bytes.jpeg").write_bytes(b"")
    good_jpeg = folder / "IM-9999-0001.jpeg"
    Image.fromarray(class_image(0, 99, 64)).save(good_jpeg, quality=95)
    data = good_jpeg.read_bytes()
    (folder / "truncated.jpeg").write_bytes(data[: len(data) // 2])
    (folder / "notes.jpeg").write_text("this is a text file, not an image\n")
    (folder / "bomb.png").write_bytes(huge_png_header(100_000, 100_000))
    Image.fromarray(np.dstack([class_image(0, 1)] * 3 + [np.full((48, 48), 128, np.uint8)])).save(folder / "rgba.png")
    Image.fromarray(class_image(0, 2)).convert("P").save(folder / "palette.png")
    Image.fromarray(class_image(0, 3).astype(np.uint16) * 16).save(folder / "sixteen_bit.png")
    return {"zero_bytes.jpeg": "empty file", "truncated.jpeg": "truncated", "notes.jpeg": "not an image",
            "bomb.png": "10,000,000,000 pixels"}


def test_salted_folder_skips_and_names_every_bad_file(tmp_path, config_for):
    root = write_kermany_like(tmp_path / "xray", {"train": 3, "test": 1})
    broken = salt(root / "train" / "NORMAL")
    data = prepare(config_for(root), show_progress=False)
    skipped = {Path(r).name: problem for r, problem in zip(data.skipped["ref"], data.skipped["problem"])}
    assert set(skipped) == set(broken)
    for name, expected in broken.items():
        assert expected in skipped[name]
    names = set(data.samples["ref"].map(lambda r: Path(r).name))
    assert {"rgba.png", "palette.png", "sixteen_bit.png", "IM-9999-0001.jpeg"} <= names
    sixteen = data.samples.loc[data.samples["ref"].str.endswith("sixteen_bit.png")].iloc[0]
    assert sixteen["mode"].startswith("I;16")
    assert data.decoded.images[sixteen["row"]].max() >= 250  # high-bit image stretched, not clipped dark
    report = check_data(data)
    assert {Path(row["ref"]).name for row in report.bad_files} == set(broken)


def test_fail_policy_stops_at_the_bad_file(tmp_path, config_for):
    root = write_kermany_like(tmp_path / "xray", {"train": 2, "test": 1})
    (root / "train" / "NORMAL" / "zero_bytes.jpeg").write_bytes(b"")
    with pytest.raises(DataError, match=r"train/NORMAL/zero_bytes\.jpeg: empty file"):
        prepare(config_for(root, on_bad_file="fail"), show_progress=False)


def test_fail_policy_applies_to_a_cache_built_under_skip(tmp_path, config_for):
    root = write_kermany_like(tmp_path / "xray", {"train": 2, "test": 1})
    (root / "train" / "NORMAL" / "notes.jpeg").write_text("not an image")
    prepare(config_for(root), show_progress=False)
    with pytest.raises(DataError, match="notes.jpeg"):
        prepare(config_for(root, on_bad_file="fail"), show_progress=False)


def test_empty_class_folder(tmp_path, config_for):
    root = write_kermany_like(tmp_path / "xray", {"train": 2, "test": 1})
    (root / "test" / "COVID").mkdir()
    with pytest.raises(DataError, match=r"test/COVID holds no images"):
        prepare(config_for(root, on_bad_file="fail"), show_progress=False)
    skipped = check_data(prepare(config_for(root), show_progress=False))
    assert any("test/COVID holds no images" in w for w in skipped.warnings)
    assert skipped.classes == ["NORMAL", "PNEUMONIA"]
    with pytest.raises(DataError, match=r"no readable images of class\(es\) \['COVID'\]"):
        prepare(config_for(root, classes=["COVID", "NORMAL", "PNEUMONIA"]), show_progress=False)


def test_unknown_layout_and_missing_path(tmp_path, config_for):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(class_image(0, 0)).save(flat / "a.png")
    with pytest.raises(DataError, match=r"no class folders .* ROOT/CLASS/\*"):
        prepare(config_for(flat), show_progress=False)
    with pytest.raises(DataError, match="does not exist .* MEDKD_DATA"):
        prepare(config_for(tmp_path / "nowhere"), show_progress=False)


def test_numpy_length_mismatch_and_labels_outside_classes(tmp_path, config_for):
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "X_train.npy", np.zeros((10, 8, 8), np.uint8))
    np.save(folder / "y_train.npy", np.zeros(9, np.int64))
    with pytest.raises(DataError, match=r"X_train.npy holds 10 images but y_train.npy holds 9 labels"):
        prepare(config_for(folder), show_progress=False)
    np.save(folder / "y_train.npy", np.array([0, 1, 5, 0, 1, 0, 1, 0, 1, 0]))
    (folder / "classes.txt").write_text("benign\nmalignant\n")
    with pytest.raises(DataError, match=r"y_train.npy: labels \[5\] \(rows \[2\]\) are outside the 2 classes"):
        prepare(config_for(folder), show_progress=False)


def test_csv_problems_are_named(tmp_path, config_for):
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"file": ["a.png"], "label": ["x"]}).to_csv(manifest, index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['path'\]"):
        prepare(config_for(manifest), show_progress=False)
    pd.DataFrame({"path": ["a.png", "b.png"], "label": ["x", "z"]}).to_csv(manifest, index=False)
    with pytest.raises(DataError, match=r"labels \['z'\] are not in the class list \['x', 'y'\]"):
        prepare(config_for(manifest, classes=["x", "y"]), show_progress=False)
