"""CSV manifest: columns path,label[,patient][,split] (names are settings); paths relative to the CSV's folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import Field

from medkd.data.config import DataConfig
from medkd.data.errors import DataError
from medkd.data.patients import patient_ids
from medkd.data.sources import register_source
from medkd.data.table import SPLIT_NAMES, FileReader, SampleTable, class_indices
from medkd.settings import StrictModel


class CsvSettings(StrictModel):
    """Which columns of the manifest say what (matched without regard to case and surrounding spaces)."""

    path_column: str = "path"
    label_column: str = "label"
    patient_column: str = Field("patient", description="optional: without it, patients come from the file names")
    split_column: str = Field("split", description="optional: train, val or test per row (empty: train)")


@register_source("csv", detect=lambda path: path.lower().endswith(".csv"), detect_order=10, settings=CsvSettings)
def load_csv(config: DataConfig, path: str, settings: CsvSettings) -> SampleTable:
    manifest = Path(path).resolve()
    frame = read_manifest(manifest)
    names = {"path": settings.path_column, "label": settings.label_column, "patient": settings.patient_column,
             "split": settings.split_column}
    missing = sorted(names[role].strip().lower() for role in ("path", "label")
                     if names[role].strip().lower() not in frame.columns)
    if missing:
        raise DataError(f"{manifest}: missing column(s) {missing}; expected {names['path']},{names['label']}"
                        f"[,{names['patient']}][,{names['split']}] (data.source_settings names other columns)")
    frame = frame.rename(columns={name.strip().lower(): role for role, name in names.items()})
    empty = frame.index[(frame["path"] == "") | (frame["label"] == "")]
    if len(empty):
        raise DataError(f"{manifest}: rows {[int(i) + 2 for i in empty[:10]]} have an empty path or label")
    warnings: list[str] = []
    refs = resolve_manifest_paths(frame["path"].tolist(), manifest)
    table = pd.DataFrame({"ref": refs})
    table["label"], classes = class_indices(frame["label"], config.classes, str(manifest))
    table["source_split"] = source_splits(frame, "split", manifest)
    patients_known = "patient" in frame.columns
    if patients_known:
        table["patient"] = frame["patient"].where(frame["patient"] != "", table["ref"]).to_numpy()
    else:
        table["patient"], unmatched = patient_ids(refs, config.split.patient_pattern)
        patients_known = config.split.patient_pattern is not None and unmatched < len(refs)
        if unmatched:
            warnings.append(f"{unmatched} of {len(refs)} paths match no patient pattern and have no patient column: "
                            "each counts as its own patient")
    return SampleTable(table, classes, FileReader(manifest.parent), origin=f"csv {manifest}",
                       warnings=warnings, patients_known=patients_known)


def resolve_manifest_paths(paths: list[str], manifest: Path) -> list[str]:
    """Absolute paths of a manifest's files: as written (absolute, or relative to the manifest's folder), or, for a
    path that is not there, as a redistribution moved it: its trailing components under the manifest's folder
    (a manifest written on another machine names e.g. /content/data/volume_1_slice_0.h5 for the file beside it).
    The number of components dropped is found on the first such path and used for all."""
    folder, resolved, dropped = manifest.parent, [], None
    for written in paths:
        path = folder / written  # an absolute `written` stays itself
        if not path.exists():
            parts = Path(written).parts
            if dropped is None:
                dropped = next((k for k in range(1, len(parts)) if (folder / Path(*parts[k:])).exists()), None)
            if dropped is not None and dropped < len(parts):
                path = folder / Path(*parts[dropped:])
        resolved.append(str(path.resolve()))
    return resolved


def read_manifest(manifest: Path) -> pd.DataFrame:
    """A manifest CSV as text, its column names stripped and lower-cased; a DataError when it cannot be read."""
    try:
        frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"{manifest}: not a readable CSV ({err})") from None
    frame.columns = [c.strip().lower() for c in frame.columns]
    return frame


def source_splits(frame: pd.DataFrame, column: str, manifest: Path) -> list[str | None] | None:
    """Each row's split (train, val, test; None where empty) from `column`, or None without that column; a
    DataError names values that are no split."""
    if column not in frame.columns:
        return None
    splits = frame[column].str.strip().str.lower()
    unknown = sorted(set(splits) - set(SPLIT_NAMES) - {""})
    if unknown:
        raise DataError(f"{manifest}: unknown split values {unknown}; use train, val or test (or leave empty)")
    return [SPLIT_NAMES.get(split) for split in splits]
