"""Patient ids from file names, so that splits never put one patient on both sides."""

from __future__ import annotations

import re
from pathlib import Path


def patient_ids(refs: list[str], pattern: str | None) -> tuple[list[str], int]:
    """Patient id of each file by `pattern` (group 'patient' or the first group, searched in the file name).

    Names that do not match, and all names when `pattern` is None, count as their own patient.
    Returns the ids and how many names did not match.
    """
    names = [Path(ref).name for ref in refs]
    if pattern is None:
        return [Path(name).stem for name in names], 0
    regex = re.compile(pattern)
    ids, unmatched = [], 0
    for name in names:
        match = regex.search(name)
        if match is None:
            ids.append(Path(name).stem)
            unmatched += 1
        else:
            ids.append(match.groupdict().get("patient") or (match.group(1) if regex.groups else match.group(0)))
    return ids, unmatched
