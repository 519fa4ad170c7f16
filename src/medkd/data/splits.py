"""Patient-level splits: validation (and, when the source has none, test) carved from train by patient,
stratified by class, deterministic for a seed."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from medkd.data.config import SplitPolicy
from medkd.data.errors import DataError
from medkd.files import SPLITS_CACHE, bytes_fingerprint, fingerprint, staged


def linked_groups(patients: pd.Series, content_hashes: pd.Series) -> np.ndarray:
    """Group id per sample: samples sharing a patient or identical bytes end up in one group."""
    from scipy.sparse import coo_matrix  # here: scipy and scikit-learn take seconds to import
    from scipy.sparse.csgraph import connected_components

    n = len(patients)
    patient_codes = pd.factorize(patients)[0]
    hash_codes = pd.factorize(content_hashes.replace("", np.nan))[0]  # -1: no hash (never links)
    n_patients = patient_codes.max() + 1
    nodes = [patient_codes + n]
    row_parts = [np.arange(n)]
    has_hash = hash_codes >= 0
    nodes.append(hash_codes[has_hash] + n + n_patients)
    row_parts.append(np.arange(n)[has_hash])
    rows, cols = np.concatenate(row_parts), np.concatenate(nodes)
    size = n + n_patients + (hash_codes.max() + 1)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    return labels[:n]


UNUSED = "unused"  # train samples set aside by split.train_fraction


def one_fold(frame: pd.DataFrame, groups: np.ndarray, source: str, fraction: float, seed: int, purpose: str,
             cache: Path | None = None, *, name: str = "the part kept", classes: list[str] | None = None,
             rest_too: bool = True) -> np.ndarray:
    """Row positions of about `fraction` of `source`'s groups (whole patients), stratified by label: the first of
    round(1 / fraction) stratified group folds (see `fold_ids`) that holds every class `source` holds (and, with
    `rest_too`, leaves every class in the rest). Stratifying whole patients can leave a fold without a class when
    few patients hold it (8 of 24 patients with tumour slices: a fold of 2 patients may have none); DataError when
    no fold will do."""
    index, ids = fold_ids(frame, groups, source, max(2, round(1 / fraction)), seed, purpose, cache)
    labels = frame["label"].to_numpy()[index]
    present = np.unique(labels)
    for fold in range(int(ids.max()) + 1):
        held = ids == fold
        if len(np.unique(labels[held])) == len(present) and (
                not rest_too or len(np.unique(labels[~held])) == len(present)):
            return index[held]
    holders = {int(c): len(np.unique(groups[index][labels == c])) for c in present}
    rare = min(holders, key=holders.__getitem__)
    label = classes[rare] if classes else rare
    raise DataError(f"{name} ({fraction:.0%} of the {len(np.unique(groups[index]))} {source} patients) cannot hold "
                    f"every class with every class left in {source}: class {label!r} is in {holders[rare]} of those "
                    "patients. Add patients with that class, change the fraction (data.split), or cross-validate "
                    "(medkd run --folds K)")


def fold_ids(frame: pd.DataFrame, groups: np.ndarray, source: str, folds: int, seed: int, purpose: str,
             cache: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`source`'s row positions and the fold (0..folds-1) of each: scikit-learn's StratifiedGroupKFold, shuffled
    with `seed`, so that a patient (group) is in one fold and each fold has about the classes' shares. With a
    `cache` folder, folds computed before for the same labels, groups and seed are read back (scikit-learn's
    search takes seconds on 5,000 images)."""
    index = np.flatnonzero(frame["split"].to_numpy() == source)
    n_groups = len(np.unique(groups[index]))
    if n_groups < folds:
        raise DataError(f"only {n_groups} patients in {source}: too few for {purpose}")
    labels = frame["label"].to_numpy()[index]
    key = fingerprint({"labels": bytes_fingerprint(np.ascontiguousarray(labels, dtype=np.int64).tobytes()),
                       "groups": bytes_fingerprint(np.ascontiguousarray(groups[index], dtype=np.int64).tobytes()),
                       "folds": folds, "seed": seed, "splitter": "StratifiedGroupKFold-shuffled-ids"}, length=24)
    stored = cache / SPLITS_CACHE / f"{key}.npy" if cache is not None else None
    if stored is not None and stored.exists():
        return index, np.load(stored)
    from sklearn.model_selection import StratifiedGroupKFold  # here: scikit-learn takes seconds to import

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    ids = np.empty(len(index), dtype=np.int64)
    with warnings.catch_warnings():  # rare classes with fewer members than folds are expected
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, held) in enumerate(splitter.split(np.zeros(len(index)), labels, groups[index])):
            ids[held] = fold
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        with staged(stored) as staging, open(staging, "wb") as file:
            np.save(file, ids)
    return index, ids


def carve(frame: pd.DataFrame, groups: np.ndarray, source: str, target: str, fraction: float, seed: int,
          cache: Path | None = None, classes: list[str] | None = None) -> pd.DataFrame:
    """Move about `fraction` of `source`'s patients to `target`, stratified by label, every class in it."""
    purpose = (f"a {target} split of {fraction:.0%} (provide a {target} split in the data or lower "
               f"data.split.{target}_fraction)")
    held = one_fold(frame, groups, source, fraction, seed, purpose, cache, name=f"the {target} split carved",
                    classes=classes)
    frame = frame.copy()
    frame.iloc[held, frame.columns.get_loc("split")] = target
    return frame


def cross_validation_fold(frame: pd.DataFrame, groups: np.ndarray, policy: SplitPolicy, cache: Path | None,
                          notes: list[str]) -> tuple[pd.DataFrame, str]:
    """Hold out fold `policy.fold` of `policy.folds` patient-level folds of train (a source's val split merged into
    it first): as test when the source has no test split (every patient is then tested once over the folds), as
    val when it has one (its test split stays untouched). Returns the frame and the split the fold became."""
    assert policy.folds is not None  # assign_splits calls this for a policy with folds
    if policy.fold is None:
        raise DataError(f"data.split.folds is {policy.folds} but no fold is chosen: set data.split.fold "
                        f"(0..{policy.folds - 1}), or run every fold with `medkd run --folds {policy.folds}`")
    frame = frame.copy()
    if (frame["split"] == "val").any():
        notes.append(f"cross-validation: the source's val split ({int((frame['split'] == 'val').sum())} images) "
                     "merged into train, which the folds divide")
        frame.loc[frame["split"] == "val", "split"] = "train"
    held_as = "val" if (frame["split"] == "test").any() else "test"
    index, ids = fold_ids(frame, groups, "train", policy.folds, policy.seed, f"{policy.folds} folds", cache)
    frame.iloc[index[ids == policy.fold], frame.columns.get_loc("split")] = held_as
    notes.append(f"cross-validation: fold {policy.fold} of {policy.folds} (patient-level, stratified, seed "
                 f"{policy.seed}) held out as {held_as}" + (" (the source's test split untouched)"
                                                           if held_as == "val" else ""))
    return frame, held_as


def check_classes_in_val(frame: pd.DataFrame, classes: list[str] | None = None) -> None:
    """Refuse (DataError, before anything trains) a validation split without a class that train has: the
    checkpoint, calibration and decision threshold are all chosen on validation."""
    train = set(frame.loc[frame["split"] == "train", "label"])
    missing = [classes[c] if classes else c for c in sorted(train - set(frame.loc[frame["split"] == "val", "label"]))]
    if missing and (frame["split"] == "val").any():
        raise DataError(f"the val split ({int((frame['split'] == 'val').sum())} images) holds no image of class(es) "
                        f"{missing}, which train has: validation chooses the checkpoint, calibration and threshold. "
                        "Give the data a val split with every class, or let medkd carve one (data.split.min_val_size "
                        "above its size), with more patients or a larger data.split.val_fraction")


def assign_splits(frame: pd.DataFrame, groups: np.ndarray, policy: SplitPolicy, cache: Path | None = None,
                  classes: list[str] | None = None) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Final train/val/test of every sample; returns the frame, the splits carved here, and notes. `cache`: a
    folder keeping computed folds (see one_fold); `classes`: the label names, for messages."""
    frame = frame.copy()
    frame["split"] = frame["source_split"].fillna("train")
    carved, notes = [], []
    if frame["source_split"].isna().any():
        notes.append(f"{int(frame['source_split'].isna().sum())} samples came without a split: "
                     "put in train before carving")
    held_out = None
    if policy.folds is not None:
        frame, held_out = cross_validation_fold(frame, groups, policy, cache, notes)
        carved.append(held_out)
    if not (frame["split"] == "test").any():
        frame = carve(frame, groups, "train", "test", policy.test_fraction, policy.seed, cache, classes)
        carved.append("test")
        notes.append(f"the source has no test split: {policy.test_fraction:.0%} of train patients carved as test")
    n_val = int((frame["split"] == "val").sum())
    if n_val < policy.min_val_size and held_out != "val":  # a fold held out as val is what the folds make it
        if n_val:
            frame.loc[frame["split"] == "val", "split"] = "train"
            notes.append(f"the source's val split has {n_val} images (< min_val_size {policy.min_val_size}): "
                         "merged into train")
        frame = carve(frame, groups, "train", "val", policy.val_fraction, policy.seed, cache, classes)
        carved.append("val")
        notes.append(f"val carved from train by patient ({policy.val_fraction:.0%}, stratified, seed {policy.seed})")
    check_classes_in_val(frame, classes)
    if policy.train_fraction < 1:
        kept = one_fold(frame, groups, "train", policy.train_fraction, policy.seed, "data.split.train_fraction", cache,
                        name="the train_fraction kept", classes=classes, rest_too=False)
        dropped = (frame["split"] == "train").to_numpy(copy=True)
        dropped[kept] = False
        frame.loc[dropped, "split"] = UNUSED
        notes.append(f"train_fraction {policy.train_fraction:g}: {len(kept)} train images of whole patients kept, "
                     f"{int(dropped.sum())} set aside")
    return frame, carved, notes
