"""Data sources: each turns a path into a SampleTable. Add one by writing a module and registering it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medkd.data.config import DataConfig
from medkd.data.errors import DataError
from medkd.data.location import resolve_data_path
from medkd.data.table import SampleTable


log = logging.getLogger(__name__)
AUTO = "auto"  # data.source: auto asks each source's detect(path), in detect_order


@dataclass(frozen=True)
class Source:
    name: str
    detect: Callable[[str], bool]
    load: Callable[[DataConfig, str], SampleTable]
    detect_order: int  # source: auto tries the lowest first: the most specific layouts before a plain folder


_REGISTRY: dict[str, Source] = {}


def register_source(name: str, detect: Callable[[str], bool], detect_order: int):
    """Decorator: register `load(config, path) -> SampleTable` under `name`; `detect(path)`, tried in
    `detect_order` (lowest first), drives source: auto."""

    def decorate(load: Callable[[DataConfig, str], SampleTable]):
        if name in _REGISTRY:
            log.warning("data source %s registered again: the later registration wins", name)
        _REGISTRY[name] = Source(name, detect, load, detect_order)
        return load

    return decorate


def available_sources() -> list[str]:
    """The registered source names, in detection order."""
    return [source.name for source in sorted(_REGISTRY.values(), key=lambda source: source.detect_order)]


def open_source(config: DataConfig) -> SampleTable:
    """Read the sample table of `config.path` with the configured (or detected) source."""
    path = resolve_data_path(config.path)
    if not path.startswith("medmnist:") and not Path(path).exists():
        raise DataError(
            f"data path '{config.path}' does not exist (looked in the working folder and under $MEDKD_DATA); "
            "pass --data PATH or set MEDKD_DATA to the folder that holds it"
        )
    if config.source != AUTO:
        return _REGISTRY[config.source].load(config, path)
    for source in sorted(_REGISTRY.values(), key=lambda source: source.detect_order):
        if source.detect(path):
            return source.load(config, path)
    raise DataError(
        f"cannot tell what kind of data '{path}' is: expected a folder ROOT/{{train,val,test}}/CLASS/* or ROOT/CLASS/*, "
        "a MedMNIST .npz, a folder with X_train.npy/y_train.npy, or a .csv manifest; or set data.source"
    )


from medkd.data.sources import csv_manifest, folder, medmnist, numpy_arrays  # noqa: E402,F401  (register them)
