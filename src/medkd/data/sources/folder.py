"""Folder layout: ROOT/{train,val,test}/CLASS/* (the Kaggle chest X-ray layout) or ROOT/CLASS/*."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from medkd.data.config import DataConfig
from medkd.data.decode import is_image_candidate
from medkd.data.errors import DataError
from medkd.data.patients import patient_ids
from medkd.data.sources import register_source
from medkd.data.table import SPLIT_NAMES, FileReader, SampleTable, class_indices
from medkd.settings import StrictModel


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


@register_source("folder", detect=lambda path: Path(path).is_dir(), detect_order=90)  # any folder: last
def load_folder(config: DataConfig, path: str, settings: StrictModel) -> SampleTable:
    root = Path(path).resolve()
    split_dirs: dict[str | None, Path] = {SPLIT_NAMES[d.name.lower()]: d for d in _subdirs(root)
                                         if d.name.lower() in SPLIT_NAMES}
    class_parents = split_dirs or {None: root}
    rows, warnings = [], []
    for split, parent in class_parents.items():
        class_dirs = _subdirs(parent)
        if not class_dirs:
            where = f"{parent}" if split else f"{root}"
            raise DataError(
                f"no class folders in {where}: expected ROOT/{{train,val,test}}/CLASS/* or ROOT/CLASS/* "
                "(one sub-folder per class holding its images)"
            )
        for class_dir in class_dirs:
            files = sorted(p for p in class_dir.rglob("*") if is_image_candidate(p))
            if not files:
                message = f"class folder {class_dir} holds no images"
                if config.on_bad_file == "fail":
                    raise DataError(f"{message}: add its images or remove the folder")
                warnings.append(message)
            rows += [(str(f), _label(f.name, class_dir.name, config), split) for f in files]
    frame = pd.DataFrame(rows, columns=["ref", "label_name", "source_split"])
    if frame.empty:
        raise DataError(f"no image files under {root}")
    frame["label"], classes = class_indices(frame["label_name"], config.classes, str(root))
    frame["patient"], unmatched = patient_ids(frame["ref"].tolist(), config.split.patient_pattern)
    if unmatched:
        warnings.append(
            f"{unmatched} of {len(frame)} file names match no patient pattern: each counts as its own patient "
            "(set data.split.patient_pattern to group images by patient)"
        )
    return SampleTable(
        frame.drop(columns="label_name"),
        classes,
        FileReader(root),
        origin=f"folder {root}",
        warnings=warnings,
        patients_known=config.split.patient_pattern is not None and unmatched < len(frame),
    )


def _label(file_name: str, folder_label: str, config: DataConfig) -> str:
    for rule in config.label_rules:
        if re.search(rule.pattern, file_name):
            return rule.label
    return folder_label
