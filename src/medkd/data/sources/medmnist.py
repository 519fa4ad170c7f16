"""MedMNIST .npz files (any 2-D set, 28/64/128/224 px): a local file, or `medmnist:NAME[@SIZE]` downloaded
into the cache with its published MD5 checked."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import urllib.error
import urllib.request
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from medkd.data.config import DataConfig, cache_root
from medkd.data.errors import DataError
from medkd.data.sources import register_source
from medkd.data.sources.numpy_arrays import integer_labels
from medkd.data.table import SPLITS, ArrayReader, SampleTable
from medkd.files import MEDMNIST_DOWNLOADS
from medkd.settings import StrictModel

log = logging.getLogger(__name__)
DOWNLOAD_TIMEOUT_S = 60


@cache
def catalog() -> dict:
    """Published MedMNIST 2-D sets: task, channels, class names, and url/md5 per size."""
    return yaml.safe_load(resources.files("medkd.data.sources").joinpath("medmnist_catalog.yaml").read_text())


def _detect(path: str) -> bool:
    return path.startswith("medmnist:") or path.lower().endswith(".npz")


@register_source("medmnist", detect=_detect, detect_order=20)
def load_medmnist(config: DataConfig, path: str, settings: StrictModel) -> SampleTable:
    file = fetch(path, cache_root(config)) if path.startswith("medmnist:") else Path(path).resolve()
    try:
        arrays = np.load(file, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{file}: not a readable .npz file ({err}); delete it to download it again") from None
    images, labels = {}, {}
    for split in SPLITS:
        if f"{split}_images" in arrays:
            if f"{split}_labels" not in arrays:
                raise DataError(f"{file}: has {split}_images but no {split}_labels")
            images[split] = arrays[f"{split}_images"]
            labels[split] = integer_labels(arrays[f"{split}_labels"], f"{file}:{split}_labels")
            if len(images[split]) != len(labels[split]):
                raise DataError(f"{file}: {split}_images has {len(images[split])} rows "
                                f"but {split}_labels {len(labels[split])}")
    if "train" not in images:
        raise DataError(f"{file}: no train_images/train_labels arrays; is this a MedMNIST file?")
    name = re.sub(r"_\d+$", "", file.stem)
    classes = list(config.classes or catalog().get(name, {}).get("classes") or
                   [str(i) for i in range(max(int(y.max()) for y in labels.values()) + 1)])
    frames = []
    for split, y in labels.items():
        if y.min() < 0 or y.max() >= len(classes):
            raise DataError(f"{file}: {split} labels outside the {len(classes)} classes {classes}")
        frames.append(pd.DataFrame({"ref": [f"{split}/{i}" for i in range(len(y))], "label": y,
                                    "source_split": split, "patient": [f"{split}-{i}" for i in range(len(y))]}))
    return SampleTable(pd.concat(frames), classes, ArrayReader(images, [file]), origin=f"medmnist {file}",
                       warnings=["MedMNIST files carry no patient ids: every image counts as its own patient"],
                       patients_known=False)


def fetch(spec: str, root: Path) -> Path:
    """Path of `medmnist:NAME[@SIZE]` in the cache, downloading it (MD5 checked) when missing."""
    match = re.fullmatch(r"medmnist:(\w+)(?:@(\d+))?", spec)
    known = catalog()
    if not match or match.group(1) not in known:
        raise DataError(f"'{spec}' is not a known MedMNIST 2-D set; "
                        f"use medmnist:NAME[@SIZE] with NAME one of {sorted(known)}")
    name, size = match.group(1), int(match.group(2) or 28)
    files = known[name]["files"]
    if size not in files:
        raise DataError(f"{name} comes in sizes {sorted(files)}, not {size}")
    url, md5 = files[size]["url"], files[size]["md5"]
    target = root / MEDMNIST_DOWNLOADS / (f"{name}.npz" if size == 28 else f"{name}_{size}.npz")
    if target.exists() and _md5(target) == md5:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    log.info("downloading %s to %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"could not download {url} ({err}). Without internet, fetch the file elsewhere (MD5 {md5}) and place it "
            f"at {target}, or pass its path with --data"
        ) from None
    actual = _md5(partial)
    if actual != md5:
        partial.unlink()
        raise DataError(f"download of {url} has MD5 {actual}, expected {md5}: incomplete or changed file; try again")
    partial.replace(target)
    return target


def _md5(file: Path) -> str:
    digest = hashlib.md5()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
