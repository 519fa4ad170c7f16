"""Runs derived from a finished run: a new run folder whose model is computed from the source run's, nothing
trained (WiSE-FT's interpolation, AdaBN's statistics, a prior-shift correction). Each method is one registered
class with its own settings; the source run is never changed."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from medkd.files import CONFIG, DATA_LOCATION, OOD_GUARD
from medkd.registry import Registry
from medkd.settings import StrictModel

if TYPE_CHECKING:
    from torch import nn

    from medkd.data import PreparedData
    from medkd.models import RunCard


class DeriveSettings(StrictModel):
    """A derived-run method's settings: `name` is the registered method; its subclass adds its own keys."""

    name: str


@dataclass
class DeriveInputs:
    """What a method may read besides the source run: the source run's own data (prepared on first use), and a
    site's unlabelled images (N, C, H, W) uint8 at the run's preprocessing."""

    source_data: Callable[[], PreparedData]
    site_images: np.ndarray | None = None
    site_paths: tuple[str, ...] = ()
    unreadable: int = 0  # site files that could not be read


class DerivedRunMethod:
    """The base of every method: `derive` returns the new model, its card and a record of what was done.

    Parameters
    ----------
    settings : DeriveSettings
        Of the method's own `Settings`.
    """

    Settings: ClassVar[type[DeriveSettings]] = DeriveSettings
    needs_site_images: ClassVar[bool] = False  # unlabelled images of a site (medkd adapt PATHS)

    def __init__(self, settings: DeriveSettings) -> None:
        self.settings = settings

    def derive(self, source: Path, inputs: DeriveInputs, out: Path) -> tuple[nn.Module, RunCard, dict[str, Any]]:
        """(model, card, record) of the derived run; `out` is its folder (e.g. for a guard file)."""
        raise NotImplementedError


DERIVED_RUNS: Registry[type[DerivedRunMethod]] = Registry("derived-run method")


def register_derived_run(name: str):
    """Class decorator: register a DerivedRunMethod subclass as `name`."""
    return DERIVED_RUNS.register(name)


def derive_settings(value: str | Mapping[str, Any] | DeriveSettings) -> DeriveSettings:
    """A registered method's validated settings from its name, a mapping {name: ..., its keys}, or settings."""
    return DERIVED_RUNS.settings_of(value, DeriveSettings)


def check_own_folder(source: Path, out: Path) -> None:
    """Refuse a derived run written into its source run's folder (the source run is never changed)."""
    if Path(out).resolve() == Path(source).resolve():
        raise ValueError(f"{out}: the derived run needs its own folder; the source run is never changed")


def write_derived_run(source: Path, out: Path, model: nn.Module, card: RunCard) -> Path:
    """A new run folder OUT: `model` and `card`, and the source run's settings, data record and guard (unless the
    method fitted its own)."""
    from medkd.models import save_model

    source, out = Path(source), Path(out)
    check_own_folder(source, out)
    out.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG, DATA_LOCATION, OOD_GUARD):
        if (source / name).exists() and not (out / name).exists():
            shutil.copy2(source / name, out / name)
    save_model(out, model, card.model_copy(update={"adapted_from": str(source.resolve())}))
    return out


def derive_run(source: str | Path, out: str | Path, settings: str | Mapping[str, Any] | DeriveSettings,
               inputs: DeriveInputs) -> tuple[Path, dict[str, Any]]:
    """Run a registered method on finished run `source` into a new run folder `out`.

    Parameters
    ----------
    source : str or Path
        A finished run folder.
    out : str or Path
        The derived run's folder.
    settings : str, mapping or DeriveSettings
        The method: its name, or {name: METHOD, its settings}.
    inputs : DeriveInputs
        The source run's data and, for the methods that need them, the site's images.

    Returns
    -------
    (Path, dict)
        The derived run folder and the record its card keeps under `adaptation`.
    """
    settings = derive_settings(settings)
    method = DERIVED_RUNS[settings.name](settings)
    if method.needs_site_images and inputs.site_images is None:
        raise ValueError(f"{settings.name} learns from a site's unlabelled images: give them (medkd adapt RUN PATHS)")
    out = Path(out)
    check_own_folder(Path(source), out)  # before the method writes its own files (a guard, metrics) into `out`
    out.mkdir(parents=True, exist_ok=True)
    model, card, record = method.derive(Path(source), inputs, out)
    record = {"method": settings.name, **record}
    if inputs.site_images is not None and method.needs_site_images:
        record.update(images=int(len(inputs.site_images)), unreadable=inputs.unreadable,
                      paths=list(inputs.site_paths))
    return write_derived_run(Path(source), out, model, card.model_copy(update={"adaptation": record})), record
