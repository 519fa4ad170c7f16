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
