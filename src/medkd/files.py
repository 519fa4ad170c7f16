"""Files that mark work as done: written whole or not at all, so a killed process never leaves half of one."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it onto `path` (atomic on one file system)."""
    staging = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    staging.write_text(text)
    staging.replace(path)
