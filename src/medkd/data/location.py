"""Where a data path is found, and the record of it in a run folder, so that later commands (evaluate, export)
find a run's data from any shell, and say where it was when it has moved."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from medkd.data.config import DataConfig
from medkd.data.errors import DataError
from medkd.files import CONFIG, DATA_LOCATION, write_json

DATA_ROOT_VARIABLE = "MEDKD_DATA"  # folder under which relative data paths are looked for after the working folder
DOWNLOADED_PREFIX = "medmnist:"  # data named by a catalogue entry, fetched into the cache: nothing to locate


@dataclass(frozen=True)
class DataLocation:
    """A data path as configured, the absolute path it named, and what a relative path was relative to."""

    path: str
    resolved: str
    relative_to: str | None = None  # "the working folder" or "$MEDKD_DATA"; None for an absolute path
    base: str | None = None  # that folder, absolute

    def describe(self) -> str:
        where = f" ({self.relative_to}: {self.base})" if self.relative_to else ""
        return f"{self.resolved}{where}"


def locate_data(path: str) -> DataLocation | None:
    """Where `path` is: as an absolute path, in the working folder, or under $MEDKD_DATA (in that order);
    None where it is not, and for downloaded data sets. `resolved` is what the sources read (Path.resolve)."""
    if path.startswith(DOWNLOADED_PREFIX):
        return None
    if Path(path).is_absolute():
        return DataLocation(path, str(Path(path).resolve())) if Path(path).exists() else None
    if Path(path).exists():
        return DataLocation(path, str(Path(path).resolve()), "the working folder", os.getcwd())
    root = os.environ.get(DATA_ROOT_VARIABLE)
    if root and (Path(root) / path).exists():
        return DataLocation(path, str((Path(root) / path).resolve()), f"${DATA_ROOT_VARIABLE}", os.path.abspath(root))
    return None


def resolve_data_path(path: str) -> str:
    """The path to read for a configured data path (see locate_data); unchanged where it is not found."""
    location = locate_data(path)
    return location.resolved if location else path


def record_data_location(folder: Path, path: str) -> DataLocation | None:
    """Write where data path `path` is found now into run folder `folder` (nothing when it is not found)."""
    location = locate_data(path)
    if location is not None:
        write_json(Path(folder) / DATA_LOCATION, asdict(location))
    return location


def run_data_path(folder: Path, path: str) -> str:
    """The data path to read for run folder `folder` trained on configured path `path`: where the run recorded its
    data, else `path` looked up as usual. Raises DataError, saying where the data was, when it is in neither."""
    record = Path(folder) / DATA_LOCATION
    recorded = DataLocation(**json.loads(record.read_text())) if record.exists() else None
    if recorded is not None and Path(recorded.resolved).exists():
        return recorded.resolved
    if path.startswith(DOWNLOADED_PREFIX) or locate_data(path) is not None:
        return resolve_data_path(path)
    was = (f"when run {folder} was trained it was {recorded.describe()}, which no longer exists"
           if recorded is not None else f"run {folder} does not record where its data was (trained before medkd "
           f"recorded it in {DATA_LOCATION})")
    raise DataError(f"data path '{path}' not found: {was}; looked in the working folder ({os.getcwd()}) and under "
                    f"${DATA_ROOT_VARIABLE} ({os.environ.get(DATA_ROOT_VARIABLE) or 'not set'}); pass --data PATH, "
                    f"or set {DATA_ROOT_VARIABLE} to the folder that holds '{path}'")


def run_data_config(folder: Path, data_path: str | None = None, cache_dir: str | None = None) -> DataConfig:
    """The data settings a run was trained with, its data where the run found it (from any working folder), or
    pointed at another copy of the data or cache."""
    config_file = Path(folder) / CONFIG
    if not config_file.exists():
        raise DataError(f"{folder} has no {CONFIG}: not a run folder written by medkd train or distill")
    data = yaml.safe_load(config_file.read_text())["data"]
    data["path"] = data_path if data_path is not None else run_data_path(folder, data["path"])
    if cache_dir is not None:
        data["cache_dir"] = cache_dir
    return DataConfig.model_validate(data)
