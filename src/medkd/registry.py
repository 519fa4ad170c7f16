"""A named registry of extensions (the KD losses on logits and on features, the transfer modes, the derived-run
methods): each registers, warns when a name is registered again and lists its names the same way. A plain dict
underneath: `name in REGISTRY`, `REGISTRY[name]`, `sorted(REGISTRY)`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """Extensions of one `kind` (e.g. "KD loss") by name."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that registers its argument as `name` and returns it unchanged; a later registration of the
        same name wins, with a warning."""

        def add(item: T) -> T:
            if name in self:
                log.warning("%s %s registered again: the later registration wins", self.kind, name)
            self[name] = item
            return item

        return add

    def settings_of(self, value: str | Mapping[str, Any] | Any, base: type) -> Any:
        """The validated settings of the extension `value` names: its name, a mapping {name: NAME, its own keys},
        or settings already made (an instance of `base`); each registered class carries its `Settings` model."""
        if isinstance(value, base):
            return value
        raw = {"name": value} if isinstance(value, str) else dict(value)
        name = raw.get("name")
        if not isinstance(name, str) or name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}: registered are {sorted(self)} (give a name, or "
                             "{name: NAME, its settings})")
        return self[name].Settings.model_validate(raw)  # type: ignore[attr-defined]
