"""Patient-aware splits: no overlap, stratified, deterministic; patient ids from Kermany names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medkd.data import SplitPolicy
from medkd.data.config import KERMANY_PATIENT_PATTERN
from medkd.data.patients import patient_ids
from medkd.data.splits import assign_splits, linked_groups


def test_kermany_patient_ids():
    names = ["person123_bacteria_456.jpeg", "person123_virus_9.jpeg", "IM-0115-0001.jpeg",
             "NORMAL2-IM-1427-0001.jpeg", "IM-0429-0001-0002.jpeg", "scan.png"]
    ids, unmatched = patient_ids([f"/data/train/X/{n}" for n in names], KERMANY_PATIENT_PATTERN)
    assert ids == ["person123", "person123", "IM-0115", "NORMAL2-IM-1427", "IM-0429", "scan"]
    assert unmatched == 1


def synthetic(n_patients: int = 300, seed: int = 0) -> pd.DataFrame:
    """Patients with 1-5 images each, 25 % of patients in class 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = int(p % 4 == 0)
        for k in range(rng.integers(1, 6)):
            rows.append({"patient": f"p{p}", "label": label, "content_hash": f"h{p}-{k}", "source_split": "train"})
    return pd.DataFrame(rows)


def split(frame: pd.DataFrame, **policy) -> pd.DataFrame:
    groups = linked_groups(frame["patient"], frame["content_hash"])
    result, _, _ = assign_splits(frame, groups, SplitPolicy(**policy))
    return result


def test_no_patient_on_two_sides_and_stratified():
    result = split(synthetic(), val_fraction=0.1, test_fraction=0.2)
    sides = result.groupby("split")["patient"].agg(set)
    assert not sides["train"] & sides["val"] and not sides["train"] & sides["test"] and not sides["val"] & sides["test"]
    share = result.groupby("split")["label"].mean()
    assert share["val"] == pytest.approx(share["train"], abs=0.06)
    assert share["test"] == pytest.approx(share["train"], abs=0.06)
    sizes = result["split"].value_counts(normalize=True)
    assert sizes["test"] == pytest.approx(0.2, abs=0.04)


def test_deterministic_for_a_seed_and_different_across_seeds():
    frame = synthetic()
    first, again, other = split(frame, seed=3), split(frame, seed=3), split(frame, seed=4)
    assert first["split"].tolist() == again["split"].tolist()
    assert first["split"].tolist() != other["split"].tolist()


def test_identical_images_of_different_patients_stay_together():
    frame = synthetic(n_patients=100)
    frame.loc[frame["patient"] == "p1", "content_hash"] = "same"
    frame.loc[frame["patient"] == "p2", "content_hash"] = "same"
    for seed in range(10):
        result = split(frame, seed=seed)
        assert result.loc[result["content_hash"] == "same", "split"].nunique() == 1


def test_small_source_val_is_merged_and_recarved():
    frame = synthetic()
    frame.loc[frame["patient"].isin(["p5", "p6"]), "source_split"] = "val"
    frame.loc[frame["patient"].isin(["p7", "p8", "p9"]), "source_split"] = "test"
    groups = linked_groups(frame["patient"], frame["content_hash"])
    result, carved, notes = assign_splits(frame, groups, SplitPolicy(min_val_size=50))
    assert carved == ["val"]
    assert any("merged into train" in note for note in notes)
    assert (result["split"] == "val").sum() >= 50
    assert set(result.loc[result["split"] == "test", "patient"]) == {"p7", "p8", "p9"}


def test_train_fraction_keeps_whole_patients_and_leaves_val_and_test_alone():
    frame = synthetic(n_patients=400)
    full, part = split(frame, seed=1), split(frame, seed=1, train_fraction=0.25)
    for name in ("val", "test"):
        assert (part["split"] == name).tolist() == (full["split"] == name).tolist()
    kept, unused = part[part["split"] == "train"], part[part["split"] == "unused"]
    assert set(kept["patient"]).isdisjoint(unused["patient"])
    assert len(kept) / (len(kept) + len(unused)) == pytest.approx(0.25, abs=0.05)
    assert kept["label"].mean() == pytest.approx(full.loc[full["split"] == "train", "label"].mean(), abs=0.06)


def slice_cohort(tumour_patients: int, patients: int = 24, slices: int = 10, tumour_slices: int = 3) -> pd.DataFrame:
    """An MRI-like cohort: every patient `slices` slices; in the first `tumour_patients` patients, `tumour_slices`
    of them show a tumour (class 1), the rest none (class 0)."""
    rows = [{"patient": f"p{p}", "label": int(p < tumour_patients and k < tumour_slices), "content_hash": f"h{p}-{k}",
             "source_split": "train"} for p in range(patients) for k in range(slices)]
    return pd.DataFrame(rows)


def test_a_small_cohort_gets_both_classes_in_every_carved_split_or_a_refusal_that_says_why(tmp_path):
    """24 patients of 10 slices, tumour slices in 8: stratifying whole patients can leave validation (2 patients)
    without a tumour slice, and the run then failed at its very end choosing a threshold. Every carved split now
    holds both classes, for every seed; where the patients cannot allow it, the split is refused before anything
    trains, naming the split and the class, through `medkd data check` as through training."""
    from typer.testing import CliRunner

    from medkd.cli import app
    from medkd.data import DataConfig, DataError, prepare

    cohort = slice_cohort(tumour_patients=8)
    for seed in range(10):
        result = split(cohort, seed=seed, val_fraction=0.1, test_fraction=0.2)
        for name in ("train", "val", "test"):
            part = result[result["split"] == name]
            assert set(part["label"]) == {0, 1}, (seed, name)
        assert not set(result.loc[result.split == "val", "patient"]) & set(result.loc[result.split != "val", "patient"])
    with pytest.raises(DataError, match=r"the val split carved \(10% of the 19 train patients\) cannot hold every "
                                         r"class with every class left in train: class 1 is in 1 of those"):
        split(slice_cohort(tumour_patients=2), seed=0, val_fraction=0.1, test_fraction=0.2)
    given = cohort.assign(source_split=np.where(cohort["patient"].isin(["p20", "p21"]), "val", "train"))
    with pytest.raises(DataError, match=r"the val split \(20 images\) holds no image of class\(es\) \[1\]"):
        split(given, min_val_size=10)

    arrays = tmp_path / "cohort"  # the same refusal from the command line, with the class's name, no traceback
    arrays.mkdir()
    few = slice_cohort(tumour_patients=2)
    images = np.zeros((len(few), 8, 8), np.uint8) + 100 * few["label"].to_numpy()[:, None, None].astype(np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(len(few)) % 256, np.arange(len(few)) // 256  # no two alike
    np.save(arrays / "X_train.npy", images)
    np.save(arrays / "y_train.npy", few["label"].to_numpy())
    np.save(arrays / "patient_train.npy", few["patient"].to_numpy().astype(str))
    (arrays / "classes.txt").write_text("no tumour\ntumour\n")
    result = CliRunner().invoke(app, ["data", "check", "--data", str(arrays), "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 2 and "class 'tumour' is in 1 of those" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    with pytest.raises(DataError, match="class 'tumour'"):
        prepare(DataConfig(path=str(arrays), cache_dir=str(tmp_path / "c")), show_progress=False)
