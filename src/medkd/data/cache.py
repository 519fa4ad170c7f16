"""Decode once: every image decoded and resized a single time into a memory-mappable uint8 array on disk.

The cache key covers the file list, each file's size and mtime, and the preprocessing and decoding
settings, so a changed file or setting makes a new cache and an unchanged one loads in seconds.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from medkd.data.config import DataConfig, cache_root
from medkd.data.errors import BadImageError, DataError
from medkd.data.preprocess import preprocess
from medkd.data.table import SampleTable
from medkd.files import DECODED_CACHE, SOURCE_INDEX_CACHE, fingerprint, one_writer, staged

log = logging.getLogger(__name__)
# bump when decoding or preprocessing code changes what lands in the cache (2: compressed DICOM; 3: C-channel
# arrays keep their channels, the preprocessing's channels resolved from the data)
CACHE_FORMAT = 3
INFO_COLUMNS = ["ref", "ok", "problem", "width", "height", "mode", "content_hash"]


@dataclass
class DecodedImages:
    """Row i of `images` (N, C, H, W) and of `info` belong to row i of the sample table."""

    images: np.ndarray
    info: pd.DataFrame
    folder: Path
    reused: bool
    seconds: float


def cache_key(table: SampleTable, config: DataConfig) -> str:
    refs = table.samples["ref"].tolist()
    identity = {
        "format": CACHE_FORMAT,
        "refs": refs,
        "files": table.reader.fingerprint(refs),
        "preprocessing": config.preprocessing.model_dump(),
        "max_pixels": config.max_pixels,
    }
    return fingerprint(identity, length=20)


def decode_all(table: SampleTable, config: DataConfig, *, show_progress: bool = True) -> DecodedImages:
    """Decoded images of every sample, from the cache when it is there, else decoded now and cached."""
    start = time.perf_counter()
    folder = cache_root(config) / DECODED_CACHE / cache_key(table, config)
    with one_writer(folder):
        if (folder / "meta.json").exists():
            decoded = _load(folder, table, start)
        else:
            decoded = _build(folder, table, config, show_progress, start)
    if config.on_bad_file == "fail" and not decoded.info["ok"].all():
        first = decoded.info[~decoded.info["ok"]].iloc[0]
        raise DataError(f"{first['ref']}: {first['problem']} "
                        "(data.on_bad_file is 'fail'; set it to 'skip' to go on without it)")
    return decoded


def _load(folder: Path, table: SampleTable, start: float) -> DecodedImages:
    info = pd.read_csv(folder / "info.csv", keep_default_na=False,
                       dtype={"problem": str, "mode": str, "content_hash": str})
    if len(info) != len(table.samples):
        raise DataError(f"decode cache {folder} does not match the data; delete that folder and run again")
    images = np.load(folder / "images.npy", mmap_mode="r")
    log.info("decoded images loaded from cache %s", folder)
    return DecodedImages(images, info, folder, reused=True, seconds=time.perf_counter() - start)


def _build(folder: Path, table: SampleTable, config: DataConfig, show_progress: bool, start: float) -> DecodedImages:
    settings = config.preprocessing
    # resolved (medkd.data.prepared.opened) before the images are decoded
    assert settings.size is not None and settings.channels is not None
    count = len(table.samples)
    staging = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    images = np.lib.format.open_memmap(
        staging / "images.npy", mode="w+", dtype=np.uint8,
        shape=(count, settings.channels, settings.size, settings.size)
    )
    refs = table.samples["ref"].tolist()

    # `images` comes in as an argument, not from this scope: `del images` below must drop the last reference to the
    # memory map (closing its file before the folder is renamed), and a closure cannot read a deleted name
    def decode_one(images: np.ndarray, row: int) -> list:
        display = table.reader.display(refs[row])
        try:
            decoded = table.reader.read(refs[row], max_pixels=config.max_pixels, draft_size=settings.size)
        except BadImageError as err:
            if config.on_bad_file == "fail":
                raise
            return [display, False, f"{err.problem} ({err.advice})", 0, 0, "", ""]
        try:
            images[row] = preprocess(decoded, settings)
        except DataError as err:  # e.g. an image with other channels than the rest: that file is left out
            if config.on_bad_file == "fail":
                raise DataError(f"{display}: {err}") from None
            return [display, False, str(err), 0, 0, "", ""]
        return [display, True, "", *decoded.original_size, decoded.original_mode, decoded.content_hash]

    columns = [TextColumn("decoding {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
    try:
        with Progress(*columns, disable=not show_progress, transient=True) as progress:
            task = progress.add_task(table.origin, total=count)
            rows = []
            for result in executor.map(partial(decode_one, images), range(count)):
                rows.append(result)
                progress.advance(task)
    except BaseException:
        executor.shutdown(cancel_futures=True)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    executor.shutdown()
    images.flush()
    del images
    info = pd.DataFrame(rows, columns=INFO_COLUMNS)
    info.to_csv(staging / "info.csv", index=False)
    (staging / "meta.json").write_text(json.dumps({
        "format": CACHE_FORMAT, "origin": table.origin, "count": count,
        "preprocessing": settings.model_dump(), "max_pixels": config.max_pixels,
    }, indent=2))
    try:
        staging.rename(folder)
    except OSError:  # another process finished the same cache first: theirs is as good as ours
        shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - start
    log.info("decoded %d images in %.1f s into %s", count, seconds, folder)
    return DecodedImages(np.load(folder / "images.npy", mmap_mode="r"), info, folder, reused=False, seconds=seconds)


def source_index(config: DataConfig, identity: dict, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """A table a source computes by reading every file (which MRI slices hold brain, their mask areas), computed
    once: cached under SOURCE_INDEX_CACHE, keyed by `identity` (the files' fingerprints and the settings used)."""
    path = cache_root(config) / SOURCE_INDEX_CACHE / f"{fingerprint({'format': CACHE_FORMAT, **identity}, 20)}.csv"
    with one_writer(path):
        if path.exists():
            return pd.read_csv(path, keep_default_na=False, dtype={"ref": str, "patient": str, "label_name": str})
        index = compute()
        with staged(path) as staging:
            index.to_csv(staging, index=False)
        return index
