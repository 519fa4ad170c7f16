"""Data sources: each turns a path into a SampleTable. Add one by writing a module and registering it, with its
own settings (a StrictModel: `data.source_settings` in a recipe, validated against it)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medkd.data.config import DataConfig
from medkd.data.errors import DataError
from medkd.data.location import resolve_data_path
from medkd.data.table import SampleTable
from medkd.settings import StrictModel

log = logging.getLogger(__name__)
AUTO = "auto"  # data.source: auto asks each source's detect(path), in detect_order
ADDRESS = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]+:")  # scheme:rest, two letters or more (C:\\ is a drive)


class NoSettings(StrictModel):
    """A source without settings of its own."""


@dataclass(frozen=True)
class Source:
    name: str
    detect: Callable[[str], bool]
    load: Callable[[DataConfig, str, StrictModel], SampleTable]
    detect_order: int  # source: auto tries the lowest first: the most specific layouts before a plain folder
    settings: type[StrictModel] = NoSettings

    def open(self, config: DataConfig, path: str) -> SampleTable:
        settings = validated_settings(self, config.source_settings)
        table = self.load(config, path, settings)
        table.source, table.source_settings = self.name, settings.model_dump(mode="json")
        return table


_REGISTRY: dict[str, Source] = {}


def register_source(name: str, detect: Callable[[str], bool], detect_order: int,
                    settings: type[StrictModel] = NoSettings):
    """Decorator: register `load(config, path, settings) -> SampleTable` under `name`; `detect(path)`, tried in
    `detect_order` (lowest first), drives source: auto; `settings`: the model `data.source_settings` is validated
    against (its instance is load's third argument)."""

    def decorate(load: Callable[[DataConfig, str, StrictModel], SampleTable]):
        if name in _REGISTRY:
            log.warning("data source %s registered again: the later registration wins", name)
        _REGISTRY[name] = Source(name, detect, load, detect_order, settings)
        return load

    return decorate


def validated_settings(source: Source, values: dict) -> StrictModel:
    """`values` as `source`'s settings; a DataError names the wrong key and what the source takes."""
    from pydantic import ValidationError

    try:
        return source.settings.model_validate(values)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise DataError(f"data.source_settings of source {source.name}: {problems} (it takes "
                        f"{', '.join(source.settings.model_fields) or 'no settings'})") from None


def source_settings_error(name: str, values: dict) -> str | None:
    """Why `values` are not valid settings of registered source `name` (None: they are)."""
    try:
        validated_settings(_REGISTRY[name], values)
    except DataError as err:
        return str(err)
    return None


def available_sources() -> list[str]:
    """The registered source names, in detection order."""
    return [source.name for source in sorted(_REGISTRY.values(), key=lambda source: source.detect_order)]


def open_source(config: DataConfig) -> SampleTable:
    """Read the sample table of `config.path` with the configured (or detected) source."""
    path = resolve_data_path(config.path)
    # NAME:... (medmnist:pneumoniamnist) names data a source finds itself; anything else is a file or folder
    if not Path(path).exists() and not ADDRESS.match(path):
        raise DataError(
            f"data path '{config.path}' does not exist (looked in the working folder and under $MEDKD_DATA); "
            "pass --data PATH or set MEDKD_DATA to the folder that holds it"
        )
    if config.source != AUTO:
        return _REGISTRY[config.source].open(config, path)
    for source in sorted(_REGISTRY.values(), key=lambda source: source.detect_order):
        if source.detect(path):
            return source.open(config, path)
    raise DataError(
        f"cannot tell what kind of data '{path}' is: expected a folder ROOT/{{train,val,test}}/CLASS/* or "
        "ROOT/CLASS/*, a MedMNIST .npz, a folder with X_train.npy/y_train.npy, a .csv manifest, a folder of HDF5 "
        "slices or of patient folders of NIfTI volumes; or set data.source"
    )


# register them
from medkd.data.sources import csv_manifest, folder, hdf5_slices, medmnist, nifti_volumes, numpy_arrays  # noqa: E402,F401
