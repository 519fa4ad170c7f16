"""Predict on image files (JPEG, PNG, BMP, TIFF, DICOM) with any predictor; optional Grad-CAM overlays."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medkd.data import (
    DEFAULT_MAX_PIXELS,
    SLICE_SEPARATOR,
    BadImageError,
    DecodedImage,
    decode_file,
    is_image_candidate,
    is_patient_folder,
    preprocess,
    volume_slices,
)
from medkd.deploy.heatmap import grad_cam, overlay
from medkd.deploy.runtime import Predictor
from medkd.models import ModelError

NIFTI = "nifti"  # the data source whose inputs are patient folders of volumes, read with the card's source settings


@dataclass
class FilePrediction:
    """One input file's result; `error` says why a file could not be used (the others still run).

    Attributes
    ----------
    file : str
        The full path.
    name : str
        The path relative to what was passed (see `input_root`): what a person reads.
    probabilities : dict of str to float or None
        P(class) by class name; None for a file that could not be used.
    label : str or None
        The decided class (saved threshold for binary tasks, else argmax).
    heatmap : str or None
        The Grad-CAM overlay's PNG file, when asked for.
    error : str or None
        Why the file could not be used.
    note : str or None
        About the decoding, e.g. the frame used of a multi-frame DICOM.
    in_distribution : bool or None
        False: unlike what the model was trained on; None: the model has no checks.
    ood_score : float or None
        The guard's score (higher: further from the training images).
    ood_reason : str or None
        Why it is out of distribution.
    """

    file: str  # the full path
    name: str  # the path relative to what was passed: what a person reads
    probabilities: dict[str, float] | None = None
    label: str | None = None
    heatmap: str | None = None
    error: str | None = None
    note: str | None = None  # about the decoding, e.g. the frame used of a multi-frame DICOM
    in_distribution: bool | None = None  # False: unlike what the model was trained on (None: it has no checks)
    ood_score: float | None = None  # the guard's score (higher: further from the training images)
    ood_reason: str | None = None  # why it is out of distribution


def expand_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, and the image files inside folders (recursively, sorted)."""
    files = []
    for path in map(Path, paths):
        files.extend(sorted(p for p in path.rglob("*") if is_image_candidate(p)) if path.is_dir() else [path])
    return files


def input_root(paths: Sequence[str | Path]) -> str | None:
    """The deepest folder holding every input (a folder passed counts as itself), or None when that is only the
    file system's root: names are shown relative to it.

    Parameters
    ----------
    paths : sequence of str or Path
        Files and folders as passed.

    Returns
    -------
    str or None
        An absolute path; None also for no inputs, or inputs on different drives (Windows).
    """
    bases = [os.path.abspath(path if path.is_dir() else path.parent) for path in map(Path, paths)]
    try:
        common = os.path.commonpath(bases)
    except ValueError:  # no inputs, or inputs on different drives (Windows)
        return None
    return None if os.path.dirname(common) == common else common


def shown_name(file: Path, root: str | None) -> str:
    """A folder's files by their place in it, a file passed alone by its name (see input_root)."""
    return os.path.relpath(os.path.abspath(file), root) if root else str(file)


def predict_decoded(predictor: Predictor,
                    decoded: list[DecodedImage]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Preprocessed images (N, C, H, W), their probabilities (N, classes) and guard scores (N,) or None."""
    images = np.stack([preprocess(d, predictor.preprocessing) for d in decoded])
    return images, *predictor.predict(images)


def distribution_check(predictor: Predictor, decoded: DecodedImage, image: np.ndarray,
                       score: float | None) -> tuple[bool | None, str | None]:
    """(in distribution?, why not) for one input, first reason found: what a DICOM file says it shows against the
    model card, a blank image, the guard's score against its threshold; `image` (C, H, W) uint8 as the model sees it.
    (None, None) for a model without checks (trained before medkd had them)."""
    record = predictor.card.get("ood") or {}
    expected = {"Modality": record.get("dicom_modalities"), "BodyPartExamined": record.get("dicom_body_parts")}
    for attribute, allowed in expected.items():
        value = (decoded.dicom or {}).get(attribute)
        if allowed and value and value.upper() not in {a.upper() for a in allowed}:
            return False, f"DICOM {attribute} is {value}: this model reads {', '.join(allowed)} images"
    if record and float(image.std()) < record.get("min_pixel_std", 0):
        return False, f"the image is blank (its grey levels vary by {image.std():.1f} of 255): nothing to read"
    if score is not None and predictor.guard_threshold is not None:
        if score > predictor.guard_threshold:
            return False, (f"unlike the images the model was trained on (guard score {score:.0f} over its threshold "
                           f"{predictor.guard_threshold:.0f}): its answer is not to be trusted")
        return True, None
    return (True, None) if record else (None, None)


def heatmap_overlays(predictor: Predictor, decoded: list[DecodedImage], images: np.ndarray,
                     probabilities: np.ndarray, channel: int = 0):
    """Grad-CAM overlays (PIL images) of the decided class (binary: the positive class), one per input. The map
    is computed from all channels; it is drawn over the image, or for images of C planes (MRI modalities) over
    plane `channel`."""
    target = 1 if len(predictor.classes) == 2 else None
    overlays = []
    for index, item in enumerate(decoded):
        cls = target if target is not None else int(probabilities[index].argmax())
        heat = grad_cam(predictor.torch_model, images[index:index + 1], predictor.card["normalisation"], cls)[0]
        if item.planes is not None and not 0 <= channel < len(item.planes):
            raise ModelError(f"heatmap channel {channel}: the image has channels 0..{len(item.planes) - 1}")
        overlays.append(overlay(item.planes[channel] if item.planes is not None else item.image, heat))
    return overlays


def predict_files(predictor: Predictor, paths: Sequence[str | Path], *, heatmap_dir: str | Path | None = None,
                  max_pixels: int = DEFAULT_MAX_PIXELS, batch_size: int = 32,
                  slices: list[int] | None = None, heatmap_channel: int = 0) -> list[FilePrediction]:
    """Decode, preprocess as the model was trained, predict; unreadable files get an `error` instead.

    Each image is preprocessed to uint8 (C, H, W) as the model's card says and predicted in batches; its
    distribution check (DICOM attributes, blank image, guard score) fills in_distribution and ood_reason.

    Parameters
    ----------
    predictor : Predictor
        A run folder's or an exported file's (`load_predictor`).
    paths : sequence of str or Path
        Image files (JPEG, PNG, BMP, TIFF, DICOM, HDF5 slices), and folders searched recursively; for a model
        trained on NIfTI volumes, patient folders (or folders of them).
    heatmap_dir : str or Path, optional
        Write a Grad-CAM overlay per image here (made when missing), of the decided class (binary: the
        positive class).
    max_pixels : int, default DEFAULT_MAX_PIXELS
        Larger decoded images are refused (their `error` says so).
    batch_size : int, default 32
        Images per prediction call.
    slices : list of int, optional
        NIfTI volumes: score these slices of each (default: every slice holding brain in the slice range).
    heatmap_channel : int, default 0
        Images of C channels (MRI modalities): the channel the overlay is drawn on (e.g. 3: FLAIR).

    Returns
    -------
    list of FilePrediction
        One per file found (per slice of a volume), in order.

    Raises
    ------
    ModelError
        For heatmaps from an ONNX file whose run folder is not here.
    """
    root = input_root(paths)
    results: list[FilePrediction] = []
    readable: list[tuple[FilePrediction, DecodedImage]] = []
    for file, name, decoded in decoded_inputs(predictor, paths, root, max_pixels, slices):
        result = FilePrediction(os.path.abspath(file), name)
        results.append(result)
        if isinstance(decoded, BadImageError):
            result.error = f"{decoded.problem} ({decoded.advice})"
            continue
        result.note = decoded.note
        readable.append((result, decoded))
    if heatmap_dir is not None:
        if not predictor.has_heatmaps:
            raise ModelError("heatmaps need the PyTorch model, and the run folder this ONNX file was exported from "
                             f"({predictor.card.get('run')}) is not here: predict with the run folder, "
                             "or drop --heatmap")
        Path(heatmap_dir).mkdir(parents=True, exist_ok=True)
    for start in range(0, len(readable), batch_size):
        batch = readable[start:start + batch_size]
        decoded_batch = [d for _, d in batch]
        images, probabilities, scores = predict_decoded(predictor, decoded_batch)
        labels = predictor.labels(probabilities)
        overlays = (heatmap_overlays(predictor, decoded_batch, images, probabilities, heatmap_channel)
                    if heatmap_dir is not None else [])
        for index, (result, _) in enumerate(batch):
            result.probabilities = {c: float(p) for c, p in zip(predictor.classes, probabilities[index])}
            result.label = labels[index]
            result.ood_score = float(scores[index]) if scores is not None else None
            result.in_distribution, result.ood_reason = distribution_check(predictor, decoded_batch[index],
                                                                           images[index], result.ood_score)
            if overlays:
                assert heatmap_dir is not None  # overlays are made only for a heatmap folder
                stem = re.sub(r"[^\w.-]+", "_", Path(result.name).stem)  # a volume's FOLDER#SLICE too
                target = Path(heatmap_dir) / f"{start + index:05d}_{stem}_gradcam.png"
                overlays[index].save(target)
                result.heatmap = str(target)
    return results


def decoded_inputs(predictor: Predictor, paths: Sequence[str | Path], root: str | None, max_pixels: int,
                   slices: list[int] | None) -> Iterator[tuple[Path, str, DecodedImage | BadImageError]]:
    """(file, shown name, decoded image or why not) per input image, read as the model's data source read its
    training images: a model trained on NIfTI volumes takes patient folders (each kept slice, or `slices`,
    one input named FOLDER#SLICE); an HDF5 slice is read from the dataset it was trained on."""
    source, settings = predictor.source
    if source == NIFTI:
        for folder in volume_folders(paths, settings):
            name = folder.name if os.path.abspath(folder) == root else shown_name(folder, root)
            try:
                for index, decoded in volume_slices(folder, settings, slices=slices, max_pixels=max_pixels):
                    yield folder, f"{name}{SLICE_SEPARATOR}{index}", decoded
            except BadImageError as err:
                yield folder, name, err
        return
    for file in expand_inputs(paths):
        try:
            yield file, shown_name(file, root), decode_file(file, max_pixels=max_pixels,
                                                            image_key=predictor.hdf5_image_key)
        except BadImageError as err:
            yield file, shown_name(file, root), err


def volume_folders(paths: Sequence[str | Path], settings: dict) -> list[Path]:
    """Patient folders among `paths`: each path that is one, else the patient folders inside it (sorted); a path
    that is neither is kept, to be reported as not a patient folder."""
    folders = []
    for path in map(Path, paths):
        inside = sorted(p for p in path.iterdir() if is_patient_folder(p, settings)) if path.is_dir() else []
        folders.extend([path] if is_patient_folder(path, settings) or not inside else inside)
    return folders


def predictions_table(results: list[FilePrediction], classes: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"file": r.file, "name": r.name, **{f"p_{c}": (r.probabilities or {}).get(c) for c in classes},
                          "label": r.label, "in_distribution": r.in_distribution, "ood_score": r.ood_score,
                          "ood_reason": r.ood_reason, "heatmap": r.heatmap, "error": r.error, "note": r.note}
                         for r in results])


def write_predictions(results: list[FilePrediction], classes: list[str], path: str | Path) -> None:
    """CSV or JSON by the suffix of `path`.

    Parameters
    ----------
    results : list of FilePrediction
    classes : list of str
        The model's classes: the CSV's p_CLASS columns.
    path : str or Path
        .json: a list of every result's fields; anything else: CSV, one row per file (file, name, p_CLASS per
        class, label, in_distribution, ood_score, ood_reason, heatmap, error, note).
    """
    path = Path(path)
    if path.suffix == ".json":
        path.write_text(json.dumps([asdict(r) for r in results], indent=2))
    else:
        predictions_table(results, classes).to_csv(path, index=False)
