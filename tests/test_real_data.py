"""The real data sets under MEDKD_DATA (CI always provides them)."""

from __future__ import annotations

import time

import pytest

from medkd.data import check_data, prepare

pytestmark = pytest.mark.real_data


def test_kermany_chest_xray(real_data, config_for):
    config = config_for(real_data / "chest_xray", preprocessing={"size": 32, "channels": 1},
                        split={"min_val_size": 100})
    data = prepare(config, show_progress=False)
    report = check_data(data)
    assert report.source_split_sizes == {"train": 5216, "test": 624}
    assert report.class_counts["test"] == {"NORMAL": 234, "PNEUMONIA": 390}
    assert data.carved == ["val"]
    assert report.split_sizes["train"] + report.split_sizes["val"] == 5216
    assert all(row["made_here"] == 0 for row in report.patient_overlap)
    assert report.duplicates_across_splits == [] and report.leaks == []
    assert report.bad_files == []
    start = time.perf_counter()
    again = prepare(config, show_progress=False)
    assert again.decoded.reused and time.perf_counter() - start < 10


def test_pneumoniamnist_official_splits_share_identical_images(real_data, config_for):
    """MedMNIST split Kermany's train by image, and that train holds exact duplicates."""
    data = prepare(config_for(real_data / "medmnist" / "pneumoniamnist.npz",
                              preprocessing={"size": 28, "channels": 1}), show_progress=False)
    report = check_data(data)
    assert report.split_sizes == {"train": 4708, "val": 524, "test": 624}
    assert report.duplicates_across_splits and all(d["splits"] == ["train", "val"]
                                                   for d in report.duplicates_across_splits)
    assert report.leaks


def test_full_resolution_sample(real_data, config_for):
    data = prepare(config_for(real_data / "chest_xray_fullres_sample", preprocessing={"size": 64, "channels": 1}),
                   show_progress=False)
    report = check_data(data)
    assert sum(report.split_sizes.values()) == 90
    assert sorted(data.carved) == ["test", "val"]
    assert set(report.image_modes) == {"L", "RGB"}
    assert report.image_sizes["width"]["max"] > 2000 and report.leaks == []
