"""Export a run's model for deployment: ONNX (fp32, optionally int8) or TorchScript, checked against PyTorch.

The exported graph takes uint8 images (N, C, H, W) at the training resolution and returns class probabilities:
normalisation, the calibration temperature and softmax are inside, so a deployment only resizes. The model card
(classes, preprocessing, threshold, calibration, id) rides along: ONNX metadata_props, or a JSON file beside a
TorchScript file.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from medkd.data import PreparedData, prepare, run_data_config
from medkd.deploy.config import ExportConfig
from medkd.deploy.graph import ProbabilityModel
from medkd.deploy.runtime import METADATA_KEY, OnnxPredictor, model_card
from medkd.errors import MedkdError
from medkd.evaluation import classification_metrics, decisions, load_guard, predict_probabilities, time_inference
from medkd.files import EXPORT, EXPORT_REPORT, ONNX_FP32, ONNX_INT8, TORCHSCRIPT, TORCHSCRIPT_CARD, write_json
from medkd.models import load_model
from medkd.tracking import log_export

log = logging.getLogger(__name__)


class ExportError(MedkdError):
    """An export that failed its checks; the message says which and what to do."""


@dataclass
class ExportReport:
    """What was written and how closely it matches PyTorch; int8: its validation scores against fp32. Nothing here
    reads the test split: whether an int8 model is kept is decided on validation (test scores of the exported
    engines are the report's, `score_exported`).

    Attributes
    ----------
    run : str
        The run folder.
    format : {"onnx", "torchscript"}
    path : str
        The exported file (fp32).
    check_images : int
        Validation images the export was compared with PyTorch on.
    max_abs_difference : float
        Largest |p_export - p_pytorch| over those images' class probabilities.
    same_decisions : bool
        Whether every one of them gets the same decision (threshold or argmax).
    int8_path : str or None
        The int8 file; None without one, or when it failed the AUC check.
    val_scores : dict of str to dict of str to float
        With int8: auc, accuracy, recall, specificity and log_loss on the whole validation split of pytorch,
        onnx_fp32 and onnx_int8.
    int8_auc_drop : float or None
        onnx_fp32's validation AUC minus onnx_int8's.
    int8_same_decisions : float or None
        Share of validation images on which onnx_int8 decides as onnx_fp32 does.
    latency_ms : dict of str to dict of str to float
        Batch-1 CPU latency of each exported ONNX engine ({"onnx_fp32": {"median": ms, "p95": ms}, ...}), uint8
        image in, probabilities out.
    threads : int or None
        Intra-op threads of the latency measurement.
    notes : list of str
        Warnings, e.g. an int8 AUC drop allowed with on_int8_drop warn.
    """

    run: str
    format: str
    path: str
    check_images: int
    max_abs_difference: float
    same_decisions: bool
    int8_path: str | None = None
    val_scores: dict[str, dict[str, float]] = field(default_factory=dict)  # pytorch / onnx fp32 / onnx int8
    int8_auc_drop: float | None = None
    int8_same_decisions: float | None = None
    # batch-1 CPU latency of each exported engine ({"onnx_fp32": {"median": ms, "p95": ms}, "onnx_int8": ...}),
    # uint8 image in, probabilities out, with `threads` intra-op threads
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    threads: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The fields as a plain dict (what export.json holds)."""
        return asdict(self)


def evenly_spaced(images: np.ndarray, count: int) -> np.ndarray:
    """`count` images spread over the whole array (deterministic; both classes when they are grouped)."""
    index = np.linspace(0, len(images) - 1, min(count, len(images))).round().astype(int)
    return np.asarray(images[index])


def export_onnx(model: ProbabilityModel, example: torch.Tensor, path: Path, card: dict, opset: int | None) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter; errors still raise
        outputs = ["probabilities"] if model.guard is None else ["probabilities", "ood_score"]
        torch.onnx.export(model, (example,), str(path), input_names=["images"], output_names=outputs,
                          dynamic_shapes={"images": {0: batch}}, opset_version=opset, external_data=False,
                          dynamo=True, verbose=False)
    write_card(path, card)


def write_card(path: Path, card: dict) -> None:
    """Set an ONNX file's medkd metadata (replacing any: the quantiser copies the fp32 model's)."""
    import onnx

    graph = onnx.load(str(path))
    kept = {p.key: p.value for p in graph.metadata_props if p.key != METADATA_KEY}
    del graph.metadata_props[:]
    onnx.helper.set_model_props(graph, {**kept, METADATA_KEY: json.dumps(card)})
    onnx.save(graph, str(path))


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over uint8 training images, a small batch at a time."""

    def __init__(self, images: np.ndarray, batch_size: int = 16) -> None:
        self.batches = iter([{"images": images[i:i + batch_size]} for i in range(0, len(images), batch_size)])

    def get_next(self) -> dict | None:
        return next(self.batches, None)


def quantise_int8(source: Path, target: Path, calibration: np.ndarray, reduce_range: bool) -> None:
    """Static int8 quantisation (QDQ, per-channel weights, activation ranges from `calibration`)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_suffix(".pre.onnx")
    quant_pre_process(str(source), str(prepared))
    # The softmax stays in float: quantised probabilities would move in steps of 1/255 around the threshold. So
    # does the guard (every node that only the ood_score output needs): distances of 8-bit features would not
    # keep its threshold.
    graph = onnx.load(str(prepared)).graph
    float_nodes = [node.name for node in graph.node if node.op_type == "Softmax"] + guard_only_nodes(graph)
    try:
        quantize_static(str(prepared), str(target), _Calibration(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        reduce_range=reduce_range, nodes_to_exclude=float_nodes)
    finally:
        prepared.unlink(missing_ok=True)


def guard_only_nodes(graph) -> list[str]:
    """Names of the nodes of an ONNX graph that the probabilities output does not depend on (the guard's)."""
    producer = {output: node for node in graph.node for output in node.output}
    needed, stack = set(), ["probabilities"]
    while stack:
        node = producer.get(stack.pop())
        if node is not None and node.name not in needed:
            needed.add(node.name)
            stack.extend(node.input)
    return [node.name for node in graph.node if node.name not in needed]


def onnx_latency(path: Path, image: np.ndarray, repeats: int) -> dict[str, float]:
    """Median and 95th-percentile batch-1 latency (ms) of an exported ONNX model on one uint8 image (1, C, H, W),
    with as many intra-op threads as torch uses here, so that it compares with the run's PyTorch latency."""
    predictor = OnnxPredictor(path, threads=torch.get_num_threads())
    median, p95, _ = time_inference(predictor.predict, image, image, repeats=repeats)
    return {"median": median, "p95": p95}


def headline_scores(labels: np.ndarray, probabilities: np.ndarray, threshold: float | None) -> dict[str, float]:
    """AUC, accuracy, recall, specificity and log-loss of `probabilities` (N, classes) at `threshold`."""
    scores = classification_metrics(labels, probabilities, threshold)
    return {name: float(scores[name]) for name in ("auc", "accuracy", "recall", "specificity", "log_loss")}


def export_run(folder: str | Path, settings: ExportConfig = ExportConfig(), *, out: str | Path | None = None,
               data: PreparedData | None = None, data_path: str | None = None,
               show_progress: bool = True) -> ExportReport:
    """Export run `folder` into OUT (default RUN/export), check it against PyTorch on validation images, and with
    settings.int8 quantise (activation ranges from training images) and score it against fp32 on the validation
    split; writes OUT/export.json. The test split is not read.

    The exported model takes uint8 images (N, C, H, W) at the training resolution, N from 1 to 4096, and returns
    float32 probabilities (N, classes), with a guard also ood_score (N,). ONNX: OUT/model.onnx (and
    OUT/model.int8.onnx), the model card in its metadata; TorchScript: OUT/model.torchscript.pt with the card
    beside it as OUT/model.torchscript.json.

    Parameters
    ----------
    folder : str or Path
        A finished run folder.
    settings : ExportConfig
        Format, int8, opset, check and calibration images, the allowed int8 AUC drop, latency repeats.
    out : str or Path, optional
        The export folder; made when missing.
    data : PreparedData, optional
        The run's prepared data; default: prepared from the run's config.yaml (at `data_path` when given).
    data_path : str, optional
        Where the run's data is now, when not where the run found it.
    show_progress : bool, default True

    Returns
    -------
    ExportReport

    Raises
    ------
    ExportError
        For int8 with format torchscript, or (on_int8_drop fail) an int8 validation AUC more than max_int8_auc_drop
        below fp32's: the int8 file is then deleted and export.json still written.
    CardError
        A ModelError: the folder has no card this medkd can read.
    DataError
        When the run's data cannot be found or read.
    """
    folder = Path(folder)
    out = Path(out) if out is not None else folder / EXPORT
    out.mkdir(parents=True, exist_ok=True)
    model, run_card = load_model(folder)
    guard = load_guard(folder, run_card.ood)
    wrapped = ProbabilityModel.from_run(model, run_card, guard)
    card = model_card(folder, run_card)
    data = data or prepare(run_data_config(folder, data_path), show_progress=show_progress)
    val_images, val_labels = data.split("val")
    val_images = np.asarray(val_images)
    threshold = card["threshold"] if len(card["classes"]) == 2 else None
    reference = predict_probabilities(model, val_images, run_card)
    checked = evenly_spaced(np.arange(len(val_images)), settings.check_images)
    example = torch.as_tensor(val_images[:2])

    if settings.format == "torchscript":
        path = out / TORCHSCRIPT
        with torch.no_grad():
            scripted = torch.jit.trace(wrapped, example)
        scripted.save(str(path))
        write_json(out / TORCHSCRIPT_CARD, card)
        with torch.no_grad():
            exported = scripted(torch.as_tensor(val_images[checked]))
        exported = (exported[0] if isinstance(exported, tuple) else exported).numpy()
    else:
        path = out / ONNX_FP32
        export_onnx(wrapped, example, path, {**card, "precision": "fp32"}, settings.opset)
        onnx_fp32 = OnnxPredictor(path)
        exported = onnx_fp32.probabilities(val_images[checked])
    report = ExportReport(
        str(folder), settings.format, str(path), len(checked),
        max_abs_difference=float(np.abs(exported - reference[checked]).max()),
        same_decisions=bool((decisions(exported, threshold) == decisions(reference[checked], threshold)).all()))
    log.info("%s: max |p_export - p_pytorch| = %.2e over %d validation images, same decisions: %s", path,
             report.max_abs_difference, len(checked), report.same_decisions)
    if settings.latency_repeats:
        report.threads = torch.get_num_threads()
        if settings.format == "onnx":
            report.latency_ms["onnx_fp32"] = onnx_latency(path, val_images[:1], settings.latency_repeats)

    if settings.int8:
        if settings.format != "onnx":
            raise ExportError("int8 quantisation is done with ONNX Runtime: use --format onnx with --int8")
        report.val_scores["pytorch"] = headline_scores(val_labels, reference, threshold)
        fp32 = onnx_fp32.probabilities(val_images)
        report.val_scores["onnx_fp32"] = headline_scores(val_labels, fp32, threshold)
        train_images, _ = data.split("train")
        int8_path = out / ONNX_INT8
        quantise_int8(path, int8_path, evenly_spaced(np.asarray(train_images), settings.calibration_images),
                      settings.int8_reduce_range)
        write_card(int8_path, {**card, "precision": "int8"})
        int8 = OnnxPredictor(int8_path).probabilities(val_images)
        report.val_scores["onnx_int8"] = headline_scores(val_labels, int8, threshold)
        report.int8_auc_drop = report.val_scores["onnx_fp32"]["auc"] - report.val_scores["onnx_int8"]["auc"]
        report.int8_same_decisions = float((decisions(int8, threshold) == decisions(fp32, threshold)).mean())
        report.int8_path = str(int8_path)
        if settings.latency_repeats:
            report.latency_ms["onnx_int8"] = onnx_latency(int8_path, val_images[:1], settings.latency_repeats)
        if report.int8_auc_drop > settings.max_int8_auc_drop:
            message = (f"int8 model's validation AUC is {report.int8_auc_drop:.4f} below fp32's, more than the "
                       f"allowed {settings.max_int8_auc_drop}: use the fp32 model, calibrate on more images "
                       "(--calibration-images), or allow it (--on-int8-drop warn)")
            if settings.on_int8_drop == "fail":
                int8_path.unlink()
                report.int8_path = None
                write_json(out / EXPORT_REPORT, report.to_dict())
                raise ExportError(message)
            log.warning("WARNING: %s", message)
            report.notes.append(message)
    write_json(out / EXPORT_REPORT, report.to_dict())
    log_export(folder, out)  # a run tracked in MLflow gets the exported models too
    return report




def score_exported(export_folder: str | Path, data: PreparedData, split: str = "test") -> dict[str, dict[str, float]]:
    """The headline scores (`headline_scores`) of each exported ONNX engine in `export_folder` on `split` of
    `data`, at the threshold the engine carries: what a report shows beside the PyTorch model's scores. Nothing
    that keeps or drops an export reads this."""
    export_folder = Path(export_folder)
    images, labels = data.split(split)
    scores = {}
    for engine, name in (("onnx_fp32", ONNX_FP32), ("onnx_int8", ONNX_INT8)):
        if (export_folder / name).exists():
            predictor = OnnxPredictor(export_folder / name)
            threshold = predictor.card["threshold"] if len(predictor.card["classes"]) == 2 else None
            scores[engine] = headline_scores(labels, predictor.probabilities(np.asarray(images)), threshold)
    return scores
