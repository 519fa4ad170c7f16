"""One interface over a run folder (PyTorch) and an exported ONNX file (ONNX Runtime): uint8 images in,
class probabilities out, with the metadata (classes, preprocessing, threshold) that travels with the model."""

from __future__ import annotations

import abc
import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medkd import __version__
from medkd.data import Preprocessing
from medkd.deploy.graph import ProbabilityModel
from medkd.evaluation import decisions, load_guard
from medkd.files import BEST, RUN_CARD, bytes_fingerprint
from medkd.models import ModelError, RunCard, load_model

METADATA_KEY = "medkd"  # ONNX metadata_props key holding the model card as JSON
CARD_KEYS = ("architecture", "model_args", "in_chans", "classes", "positive_class", "preprocessing", "normalisation",
             "source", "threshold", "calibration", "ood")


def model_card(folder: Path, card: RunCard) -> dict:
    """What a deployed copy needs to know (the JSON an exported file carries): the run card's inference entries,
    an id from the weights, the version."""
    digest = bytes_fingerprint((folder / BEST).read_bytes(), length=12)
    entries = card.model_dump(mode="json", include=set(CARD_KEYS))
    return {**{key: entries.get(key) for key in CARD_KEYS}, "model_id": f"{card.architecture}-{digest}",
            "medkd_version": __version__, "run": str(folder.resolve())}


class Predictor(abc.ABC):
    """Class probabilities for uint8 images (N, C, H, W) preprocessed as `preprocessing` says.

    The base of the PyTorch (run folder) and ONNX Runtime (exported file) predictors; `load_predictor` makes
    either.

    Parameters
    ----------
    card : dict
        The model card (`model_card`: classes, preprocessing, normalisation, threshold, calibration, ood,
        model_id, ...).
    engine : str
        What computes, for people: "pytorch" or "onnxruntime (fp32)" / "onnxruntime (int8)".
    load_torch_model : callable or None
        Loads the PyTorch model for Grad-CAM; None when only the ONNX file is available.
    """

    def __init__(self, card: dict, engine: str, load_torch_model: Callable[[], nn.Module] | None) -> None:
        self.card = card
        self.engine = engine
        self._load_torch_model = load_torch_model  # None when only the ONNX file is available

    @property
    def has_heatmaps(self) -> bool:
        """Whether Grad-CAM can run: it needs the PyTorch model (the run folder an ONNX file came from)."""
        return self._load_torch_model is not None

    @functools.cached_property
    def torch_model(self) -> nn.Module:
        """The PyTorch model, loaded on first use (an ONNX deployment that never asks for heatmaps skips it).

        Raises
        ------
        ModelError
            When the run folder the ONNX file came from is not here.
        """
        if self._load_torch_model is None:
            raise ModelError("heatmaps need the PyTorch model: its run folder is not beside this ONNX file")
        return self._load_torch_model()

    @property
    def classes(self) -> list[str]:
        """The class names, in the order of the probabilities' columns."""
        return self.card["classes"]

    @property
    def threshold(self) -> float | None:
        """The decision threshold on P(positive) chosen on validation; None for multi-class tasks (argmax)."""
        return self.card.get("threshold") if len(self.classes) == 2 else None

    @property
    def preprocessing(self) -> Preprocessing:
        """How a decoded image becomes the model's uint8 (C, H, W) input: size, channels, resize."""
        return Preprocessing.model_validate(self.card["preprocessing"])

    @property
    def source(self) -> tuple[str | None, dict]:
        """The data source the model was trained on and its settings ((None, {}) for runs from before medkd
        recorded it): how an HDF5 slice's dataset or a NIfTI volume's modalities are read for it."""
        record = self.card.get("source") or {}
        return record.get("name"), record.get("settings") or {}

    @property
    def hdf5_image_key(self) -> str | None:
        """The HDF5 dataset its training slices were read from; None: the file's own (see data.decode_hdf5)."""
        name, settings = self.source
        return settings.get("image_key") if name == "hdf5" else None

    @property
    def guard_threshold(self) -> float | None:
        """The out-of-distribution score above which an image is flagged (None: the model has no guard)."""
        return (self.card.get("ood") or {}).get("threshold")

    @abc.abstractmethod
    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities (N, classes) and guard scores (N,) (None without a guard) for uint8 images (N, C, H, W).

        Parameters
        ----------
        images : np.ndarray of shape (N, C, H, W), uint8
            Preprocessed as `preprocessing` says.

        Returns
        -------
        probabilities : np.ndarray of shape (N, classes), float32
            Calibrated; rows sum to 1.
        scores : np.ndarray of shape (N,), float32, or None
            The guard's scores; None when the model has no guard.
        """

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) for uint8 images (N, C, H, W).

        Parameters
        ----------
        images : np.ndarray of shape (N, C, H, W), uint8

        Returns
        -------
        np.ndarray of shape (N, classes), float32
        """
        return self.predict(images)[0]

    def labels(self, probabilities: np.ndarray) -> list[str]:
        """Class names decided at the saved threshold (binary) or by argmax.

        Parameters
        ----------
        probabilities : np.ndarray of shape (N, classes)

        Returns
        -------
        list of str
            One class name per row.
        """
        return [self.classes[i] for i in decisions(probabilities, self.threshold)]


class TorchPredictor(Predictor):
    def __init__(self, folder: Path, batch_size: int = 64) -> None:
        model, card = load_model(folder)
        super().__init__(model_card(folder, card), "pytorch", lambda: model)
        guard = load_guard(folder, card.ood)
        self.graph = ProbabilityModel.from_run(model, card, guard)  # what export exports
        self.batch_size = batch_size

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        probabilities, scores = [], []
        for start in range(0, len(images), self.batch_size):
            batch = torch.as_tensor(np.ascontiguousarray(images[start:start + self.batch_size]))
            output = self.graph(batch.contiguous(memory_format=torch.channels_last))
            probabilities.append(output[0] if isinstance(output, tuple) else output)
            if isinstance(output, tuple):
                scores.append(output[1])
        return torch.cat(probabilities).numpy(), torch.cat(scores).numpy() if scores else None


class OnnxPredictor(Predictor):
    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        props = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise ModelError(f"{path} has no medkd metadata: export it with `medkd export` (an ONNX file from "
                             "elsewhere does not say its classes and preprocessing)")
        card = json.loads(props[METADATA_KEY])
        run = Path(card.get("run", ""))
        load_torch_model = (lambda: load_model(run)[0]) if (run / RUN_CARD).exists() else None
        super().__init__(card, f"onnxruntime ({card.get('precision', 'fp32')})", load_torch_model)
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(images, dtype=np.uint8)})
        return outputs[0], outputs[1] if len(outputs) > 1 else None


def load_predictor(model: str | Path, threads: int | None = None) -> Predictor:
    """A run folder (PyTorch) or an `.onnx` file written by `medkd export` (ONNX Runtime).

    Parameters
    ----------
    model : str or Path
        A run folder, or an .onnx file with medkd's metadata.
    threads : int, optional
        ONNX Runtime's intra-op threads (default: its own); not read for a run folder.

    Returns
    -------
    Predictor

    Raises
    ------
    ModelError
        When `model` is neither, or an ONNX file has no medkd metadata; CardError (a ModelError) for a run folder
        without a card this medkd can read.
    """
    path = Path(model)
    if path.is_dir():
        return TorchPredictor(path)
    if path.suffix == ".onnx" and path.is_file():
        return OnnxPredictor(path, threads)
    raise ModelError(f"{model}: expected a run folder (from medkd train/distill/run) or an .onnx file from "
                     "`medkd export`")
