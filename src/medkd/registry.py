"""A named registry of extensions (the KD losses on logits and on features): each registers, warns when a name is
registered again and lists its names the same way. A plain dict underneath: `name in REGISTRY`, `REGISTRY[name]`,
`sorted(REGISTRY)`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

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
