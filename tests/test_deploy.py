"""Deployment: ONNX/TorchScript export checked against PyTorch, int8 with its test re-evaluation, predict on
JPEG/PNG/DICOM/broken files with Grad-CAM, the HTTP API and its limits, a load test, and the page in a browser."""

from __future__ import annotations

import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnx
import pandas as pd
import pydicom
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from typer.testing import CliRunner

from conftest import class_image, kermany_like_config, write_dicom, write_kermany_like
from medkd.cli import app
from medkd.data import DataConfig, DataError, prepare, run_data_config
from medkd.deploy import (
    ExportConfig,
    ExportError,
    ServeConfig,
    create_app,
    export_run,
    load_predictor,
    predict_files,
    write_predictions,
)
from medkd.deploy import export as export_module
from medkd.deploy.runtime import METADATA_KEY
from medkd.engine import TrainConfig, fit
from medkd.evaluation import EvaluationConfig, evaluate_run, predict_run_logits
from medkd.files import DATA_LOCATION
from medkd.models import RunCard

CHROMIUM = os.environ.get("MEDKD_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def exported(trained_run) -> dict:
    report = export_run(trained_run.folder, ExportConfig(int8=True, calibration_images=64), show_progress=False)
    return report.to_dict()


def band_image(label: int, seed: int, size: int = 96) -> np.ndarray:
    return class_image(label, seed, size=size)


def encoded(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def test_onnx_export_matches_pytorch_and_carries_its_card(trained_run, exported):
    assert exported["max_abs_difference"] < 1e-5 and exported["same_decisions"]
    graph = onnx.load(exported["path"])
    card = json.loads({p.key: p.value for p in graph.metadata_props}[METADATA_KEY])
    sidecar = json.loads((trained_run.folder / "model.json").read_text())
    assert card["classes"] == sidecar["classes"] and card["threshold"] == sidecar["threshold"]
    assert card["preprocessing"] == sidecar["preprocessing"] and card["model_id"].startswith("compact_cnn-")
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    onnx_model, torch_model = load_predictor(exported["path"]), load_predictor(trained_run.folder)
    for batch in (1, 7):  # the batch axis is dynamic
        images = np.stack([band_image(i % 2, i, 32)[None] for i in range(batch)])
        np.testing.assert_allclose(onnx_model.probabilities(images), torch_model.probabilities(images), atol=1e-5)
    # the graph holds the calibration: softmax(logits / T), T fitted on validation, not the raw softmax
    temperature = card["calibration"]["temperature"]
    assert temperature == sidecar["calibration"]["temperature"] and abs(temperature - 1) > 0.01
    logits = predict_run_logits(torch_model.torch_model, images, RunCard.read(trained_run.folder))
    np.testing.assert_allclose(onnx_model.probabilities(images), (logits / temperature).softmax(dim=1), atol=1e-5)
    assert not np.allclose(onnx_model.probabilities(images), logits.softmax(dim=1), atol=1e-3)
    # the guard's score is a second output of the same graph, as PyTorch computes it
    assert [output.name for output in graph.graph.output] == ["probabilities", "ood_score"]
    np.testing.assert_allclose(onnx_model.predict(images)[1], torch_model.predict(images)[1], rtol=1e-4)
    # the ONNX predictor knows heatmaps are possible (its run folder exists) but loads PyTorch only when asked
    assert onnx_model.has_heatmaps and "torch_model" not in vars(onnx_model)
    assert isinstance(onnx_model.torch_model, torch.nn.Module) and "torch_model" in vars(onnx_model)


def test_a_guard_on_every_block_with_augmented_views_is_one_pass_in_pytorch_evaluate_and_onnx(tmp_path):
    """guard features 'blocks' (each resolution's last feature map, pooled) fitted on the train split and two
    augmented views of it: evaluate, PyTorch prediction and the exported graph give the same scores, and the
    probabilities are those of the model without a guard."""
    config = kermany_like_config(tmp_path, patients_per_class=8)
    settings = TrainConfig(model="compact_cnn", model_args={"width": 8}, epochs=1, batch_size=16,
                           guard={"features": "blocks", "train_views": 2})
    folder = fit(config, settings, tmp_path / "run", show_progress=False)
    sidecar = json.loads((folder / "model.json").read_text())
    train_images = len(prepare(config, show_progress=False).split("train")[1])
    record = sidecar["ood"]
    assert record["features"] == "blocks" and record["train_views"] == 2 and record["train_images"] == 3 * train_images
    assert record["feature_dim"] == 8 + 16 + 32 + 32  # compact_cnn width 8: its three blocks and the last pool
    evaluation = evaluate_run(folder, "test", settings=EvaluationConfig(bootstrap_resamples=0), show_progress=False)
    table = pd.read_csv(folder / "evaluation" / "test_predictions.csv")
    report = export_run(folder, ExportConfig(int8=False), show_progress=False)
    onnx_model, torch_model = load_predictor(report.path), load_predictor(folder)
    images = np.stack([band_image(i % 2, i, 32)[None] for i in range(5)])
    onnx_probabilities, onnx_scores = onnx_model.predict(images)
    torch_probabilities, torch_scores = torch_model.predict(images)
    np.testing.assert_allclose(onnx_scores, torch_scores, rtol=1e-4)
    np.testing.assert_allclose(onnx_probabilities, torch_probabilities, atol=1e-5)
    logits = predict_run_logits(torch_model.torch_model, images, RunCard.read(folder))  # the plain network, no guard
    np.testing.assert_allclose(torch_probabilities, (logits / sidecar["calibration"]["temperature"]).softmax(1),
                               atol=1e-5)
    assert evaluation.ood["flagged"] == int((~table["in_distribution"]).sum()) and table["ood_score"].notna().all()


def test_int8_model_is_checked_on_validation_against_fp32(exported):
    scores = exported["val_scores"]
    assert set(scores) == {"pytorch", "onnx_fp32", "onnx_int8"} and "test_scores" not in exported
    assert scores["pytorch"]["auc"] == pytest.approx(scores["onnx_fp32"]["auc"], abs=1e-6)
    assert exported["int8_auc_drop"] == pytest.approx(scores["onnx_fp32"]["auc"] - scores["onnx_int8"]["auc"])
    assert exported["int8_auc_drop"] <= 0.01  # the generated task is easy: int8 must keep it
    assert 0.9 <= exported["int8_same_decisions"] <= 1
    int8 = load_predictor(exported["int8_path"])
    assert int8.card["precision"] == "int8" and "int8" in int8.engine
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(exported["int8_path"]).graph.node)
    # batch-1 CPU latency of both exported engines, with the thread count the run's PyTorch latency used
    assert set(exported["latency_ms"]) == {"onnx_fp32", "onnx_int8"} and exported["threads"] == torch.get_num_threads()
    assert all(0 < timing["median"] <= timing["p95"] for timing in exported["latency_ms"].values())


def test_export_never_reads_the_test_split(trained_run, tmp_path, monkeypatch):
    """Whether an int8 model is kept is decided on validation: export reads train (calibration) and val only."""
    from medkd.data import PreparedData

    asked: list[str] = []
    original = PreparedData.split
    monkeypatch.setattr(PreparedData, "split", lambda self, name: asked.append(name) or original(self, name))
    export_run(trained_run.folder, ExportConfig(int8=True, calibration_images=32, latency_repeats=0), out=tmp_path,
               show_progress=False)
    assert asked and "test" not in asked and {"train", "val"} <= set(asked)


def test_int8_over_the_allowed_drop_is_refused_or_warned(trained_run, tmp_path, monkeypatch):
    def swapped_classes(source: Path, target: Path, calibration, reduce_range) -> None:
        """A 'quantised' model gone wrong: the classifier's rows swapped, so its AUC becomes 1 - AUC."""
        graph = onnx.load(str(source))
        gemm = next(node for node in graph.graph.node if node.op_type == "Gemm")
        for tensor in graph.graph.initializer:
            if tensor.name in gemm.input[1:]:
                array = onnx.numpy_helper.to_array(tensor)[::-1].copy()
                tensor.CopyFrom(onnx.numpy_helper.from_array(array, tensor.name))
        onnx.save(graph, str(target))

    monkeypatch.setattr(export_module, "quantise_int8", swapped_classes)
    with pytest.raises(ExportError, match="below fp32's"):
        export_run(trained_run.folder, ExportConfig(int8=True), out=tmp_path / "fail", show_progress=False)
    assert not (tmp_path / "fail" / "model.int8.onnx").exists()
    report = export_run(trained_run.folder, ExportConfig(int8=True, on_int8_drop="warn"), out=tmp_path / "warn",
                        show_progress=False)
    assert report.int8_auc_drop > 0.01 and report.notes and (tmp_path / "warn" / "model.int8.onnx").exists()


def test_torchscript_export_matches_pytorch(trained_run, tmp_path):
    report = export_run(trained_run.folder, ExportConfig(format="torchscript"), out=tmp_path, show_progress=False)
    assert report.max_abs_difference < 1e-5 and report.same_decisions
    scripted = torch.jit.load(report.path)
    images = np.stack([band_image(1, 5, 32)[None]])
    expected = load_predictor(trained_run.folder).probabilities(images)
    with torch.no_grad():
        probabilities, scores = scripted(torch.as_tensor(images))  # with the run's out-of-distribution guard
    np.testing.assert_allclose(probabilities.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(scores.numpy(), load_predictor(trained_run.folder).predict(images)[1], rtol=1e-4)
    assert json.loads((tmp_path / "model.torchscript.json").read_text())["classes"] == ["NORMAL", "PNEUMONIA"]


def test_predict_reads_every_format_reports_broken_files_and_draws_heatmaps(trained_run, exported, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    pneumonia, normal = band_image(1, 101), band_image(0, 102)
    (inputs / "a_pneumonia.jpg").write_bytes(encoded(pneumonia, "JPEG"))
    (inputs / "b_normal.png").write_bytes(encoded(normal, "PNG"))
    twelve_bit = pneumonia.astype(np.uint16) * 16
    write_dicom(inputs / "c_mono2.dcm", twelve_bit)
    write_dicom(inputs / "d_mono1.dcm", 4095 - twelve_bit, photometric="MONOCHROME1")  # inverted storage
    (inputs / "e_broken.jpg").write_bytes(encoded(normal, "JPEG")[:200])  # truncated
    (inputs / "notes.txt").write_text("not an image, and not picked from a folder")

    for model in (trained_run.folder, exported["path"]):
        results = {Path(r.file).name: r for r in predict_files(load_predictor(model), [inputs],
                                                               heatmap_dir=tmp_path / "heat")}
        assert sorted(results) == ["a_pneumonia.jpg", "b_normal.png", "c_mono2.dcm", "d_mono1.dcm", "e_broken.jpg"]
        assert "truncated" in results["e_broken.jpg"].error and results["e_broken.jpg"].label is None
        # a 2-epoch model ranks well but is barely confident: compare its scores, not its labels
        assert (results["a_pneumonia.jpg"].probabilities["PNEUMONIA"]
                > results["b_normal.png"].probabilities["PNEUMONIA"])
        threshold = load_predictor(model).threshold
        for result in (r for r in results.values() if r.probabilities):
            assert result.label == ("PNEUMONIA" if result.probabilities["PNEUMONIA"] >= threshold else "NORMAL")
        mono2, mono1 = results["c_mono2.dcm"].probabilities, results["d_mono1.dcm"].probabilities
        assert mono1["PNEUMONIA"] == pytest.approx(mono2["PNEUMONIA"], abs=1e-4)  # MONOCHROME1 is inverted back
        heat = Image.open(results["a_pneumonia.jpg"].heatmap)
        assert heat.size == (96, 96) and heat.mode == "RGB"  # over the original image, at its size
    write_predictions(list(results.values()), ["NORMAL", "PNEUMONIA"], tmp_path / "out.csv")
    assert "truncated" in (tmp_path / "out.csv").read_text()


PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"  # the test files pydicom ships


def pydicom_decodes(path: Path) -> bool:
    """Whether pydicom itself, with the installed plugins, decodes the file's pixel data."""
    try:
        _ = pydicom.dcmread(path).pixel_array
    except Exception:  # anything: not DICOM, no pixel data, no decoder, damaged
        return False
    return True


def reason_kind(error: str) -> str:
    """The kind of a refusal, from the start of its reason."""
    kinds = {"not an image file": "not an image", "not a DICOM file": "not DICOM",
             "DICOM file holds no pixel data": "no pixel data", "invalid DICOM image header": "bad header",
             "DICOM file does not say how its pixel data is encoded": "no transfer syntax",
             "cannot decode DICOM pixel data": "damaged pixel data", "no decoder installed": "no decoder"}
    return next(kind for start, kind in kinds.items() if error.startswith(start))


def test_predict_on_every_file_pydicom_ships_predicts_what_pydicom_decodes_and_names_why_not(trained_run):
    files = sorted(path for path in PYDICOM_FILES.rglob("*") if path.is_file())
    results = predict_files(load_predictor(trained_run.folder), files)  # each file passed by name: none is skipped
    by_file = {Path(result.file): result for result in results}
    assert sorted(by_file) == files and all(Path(result.file).is_absolute() for result in results)
    predicted = {file for file, result in by_file.items() if result.probabilities is not None}
    refused = {file: result.error for file, result in by_file.items() if result.error is not None}
    assert predicted.isdisjoint(refused) and predicted | set(refused) == set(files)
    assert predicted == {file for file in files if pydicom_decodes(file)}  # everything pydicom decodes
    # pydicom 3.0.2's test files; a pydicom release that changes them changes these numbers
    assert (len(files), len(predicted), len(refused)) == (176, 89, 87)
    assert Counter(map(reason_kind, refused.values())) == {
        "no pixel data": 68, "not an image": 9, "not DICOM": 4, "damaged pixel data": 4, "bad header": 1,
        "no transfer syntax": 1}
    assert all("\n" not in error and error.endswith(")") for error in refused.values())  # one line, with advice
    syntaxes = Counter(pydicom.dcmread(file, stop_before_pixels=True).file_meta.TransferSyntaxUID for file in predicted)
    # the two compressed files refused (a 12-bit JPEG and a JPEG 2000 with damaged data) pydicom refuses too
    assert {uid: count for uid, count in syntaxes.items() if uid.is_compressed} == {
        JPEGBaseline8Bit: 14, JPEGExtended12Bit: 1, JPEGLosslessSV1: 1, JPEGLSLossless: 1, JPEGLSNearLossless: 4,
        JPEG2000Lossless: 4, JPEG2000: 3, RLELossless: 9}
    notes = {file.name: result.note for file, result in by_file.items() if result.note}
    assert notes["examples_ybr_color.dcm"] == "multi-frame DICOM (30 frames): the first frame was used"
    assert len(notes) == 7  # every multi-frame file
    assert by_file[PYDICOM_FILES / "dicomdirtests/77654033/CR1/6154"].name == "dicomdirtests/77654033/CR1/6154"
    # a CT or MR slice is flagged by what the file says it is, whatever the guard's score
    for file in predicted:
        modality = pydicom.dcmread(file, stop_before_pixels=True).get("Modality")
        if modality in ("CT", "MR"):
            assert by_file[file].in_distribution is False, file
            assert by_file[file].ood_reason.startswith(f"DICOM Modality is {modality}: this model reads CR, DX, DR")


def test_predict_command_shows_names_whole_and_one_line_per_unreadable_file(trained_run, tmp_path):
    out = tmp_path / "predictions.csv"
    done = subprocess.run([sys.executable, "-m", "medkd.cli", "predict", str(trained_run.folder), str(PYDICOM_FILES),
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)
    assert len(table) == 168  # the folder's files named as images, or with no suffix (as DICOM often is)
    assert table["file"].map(lambda file: Path(file).is_absolute() and Path(file).is_file()).all()
    assert (table["file"] == [str(PYDICOM_FILES / name) for name in table["name"]]).all()
    readable, unreadable = table[table["error"].isna()], table[table["error"].notna()]
    assert len(readable) == 89
    for name in readable["name"]:  # whole, relative to the folder passed
        assert f"│ {name} " in done.stdout
    assert f"files in {PYDICOM_FILES}" in done.stdout and "…" not in done.stdout
    flagged = int((readable["in_distribution"] == False).sum())  # noqa: E712 (a column of booleans)
    assert flagged >= 1 and "OUT OF DISTRIBUTION: " in done.stdout
    warning = (f"warning: {flagged} of 89 image(s) do not look like what the model was trained on "
               "(OUT OF DISTRIBUTION above): do not trust their answers")
    assert done.stderr.splitlines() == [warning, f"{len(unreadable)} of 168 file(s) could not be read:",
                                        *(f"  {name}: {error}" for name, error in zip(unreadable["name"],
                                                                                      unreadable["error"]))]


def test_a_run_finds_its_data_from_any_shell_and_says_where_it_was_when_it_moved(tmp_path, monkeypatch):
    shared, project, elsewhere = tmp_path / "shared", tmp_path / "project", tmp_path / "elsewhere"
    write_kermany_like(shared / "xray", {"train": 4, "test": 2}, patients_per_class=20)
    project.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("MEDKD_DATA", "../shared")  # relative, as the Makefile sets it
    config = DataConfig.model_validate({"path": "xray", "cache_dir": str(tmp_path / "cache"),
                                        "preprocessing": {"size": 32, "channels": 1}, "split": {"min_val_size": 1}})
    run = fit(config, TrainConfig(model="compact_cnn", model_args={"width": 8}, epochs=2, batch_size=32),
              project / "runs" / "tiny" / "seed0", show_progress=False)
    data = str((shared / "xray").resolve())
    assert json.loads((run / DATA_LOCATION).read_text()) == {
        "path": "xray", "resolved": data, "relative_to": "$MEDKD_DATA", "base": str(shared)}

    monkeypatch.chdir(elsewhere)  # as a new shell: another working folder, no MEDKD_DATA
    monkeypatch.delenv("MEDKD_DATA")
    done = CliRunner().invoke(app, ["export", str(run), "--int8", "--calibration-images", "64", "--no-progress"])
    assert done.exit_code == 0, done.output
    assert (json.loads((run / "export" / "export.json").read_text())["int8_path"]
            == str(run / "export" / "model.int8.onnx"))
    assert run_data_config(run).path == data
    assert evaluate_run(run, "test", settings=EvaluationConfig(bootstrap_resamples=0)).images == 80

    (shared / "xray").rename(shared / "moved")
    with pytest.raises(DataError) as moved:
        run_data_config(run)
    assert (f"when run {run} was trained it was {data} ($MEDKD_DATA: {shared}), which no longer exists"
            in str(moved.value))
    assert "pass --data PATH, or set MEDKD_DATA to the folder that holds 'xray'" in str(moved.value)
    assert run_data_config(run, str(shared / "moved")).path == str(shared / "moved")  # --data
    (shared / "moved").rename(elsewhere / "xray")  # the recipe's path is found again as usual: here
    assert run_data_config(run).path == str((elsewhere / "xray").resolve())
    (run / DATA_LOCATION).unlink()  # a run from before medkd recorded its data
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=f"run {run} does not record where its data was"):
        run_data_config(run)


@pytest.fixture(scope="module")
def client(trained_run) -> TestClient:
    settings = ServeConfig(max_upload_bytes=200_000, max_pixels=1_000_000, token="s3cret")
    return TestClient(create_app(load_predictor(trained_run.folder), settings))


AUTH = {"Authorization": "Bearer s3cret"}


def passed_test_image(trained_run) -> Path:
    """The first image of the run's test split (sorted) that predict_files finds in distribution (95 % are)."""
    results = predict_files(load_predictor(trained_run.folder), [Path(trained_run.config.path) / "test"])
    return Path(next(result.file for result in results if result.in_distribution))


def test_api_predicts_and_explains_a_good_image(client, trained_run):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["token_required"] and health["classes"] == ["NORMAL", "PNEUMONIA"]
    answer = client.post("/predict?heatmap=true", headers=AUTH,
                         files={"file": ("x.png", encoded(band_image(1, 7), "PNG"), "image/png")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    positive = body["probabilities"]["PNEUMONIA"] >= health["threshold"]
    assert body["label"] == ("PNEUMONIA" if positive else "NORMAL")
    assert (body["model_id"] == health["model_id"] and body["latency_ms"] > 0
            and body["threshold"] == health["threshold"])
    import base64
    assert Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"]))).size == (96, 96)
    assert "<form" in client.get("/").text
    # every answer carries the guard's verdict and score: an image of the test split passes, a blank frame does not
    assert isinstance(body["in_distribution"], bool) and body["ood_score"] >= 0 and body["ood_threshold"] > 0
    test_image = passed_test_image(trained_run)
    same = client.post("/predict", headers=AUTH, files={"file": (test_image.name, test_image.read_bytes(),
                                                                 "image/jpeg")}).json()
    assert same["in_distribution"] is True and same["ood_score"] <= same["ood_threshold"] and same["ood_reason"] is None
    blank = client.post("/predict", headers=AUTH, files={"file": ("b.png", encoded(np.zeros((96, 96), np.uint8), "PNG"),
                                                                  "image/png")}).json()
    assert blank["in_distribution"] is False and blank["ood_reason"].startswith("the image is blank")


@pytest.mark.parametrize("name, payload, status, message", [
    ("notes.txt", b"hello, not an image", 415, "not an image"),
    ("cut.jpg", encoded(band_image(0, 3), "JPEG")[:150], 422, "truncated"),
    ("empty.png", b"", 415, "empty"),
    ("huge.png", encoded(np.zeros((1200, 1200), dtype=np.uint8), "PNG"), 413, "pixels"),
    ("big.bin", os.urandom(300_000), 413, "over the limit"),
])
def test_api_refuses_bad_uploads_with_a_4xx_that_says_why(client, name, payload, status, message):
    answer = client.post("/predict", headers=AUTH, files={"file": (name, payload, "application/octet-stream")})
    assert answer.status_code == status and message in answer.json()["detail"]


def test_api_reads_compressed_and_multi_frame_dicom(client):
    for name, note in (("JPGExtended.dcm", None),  # 12-bit JPEG extended
                       ("SC_rgb_rle_2frame.dcm", "multi-frame DICOM (2 frames): the first frame was used")):
        upload = {"file": (name, (PYDICOM_FILES / name).read_bytes(), "application/dicom")}
        answer = client.post("/predict", headers=AUTH, files=upload)
        assert answer.status_code == 200, answer.text
        assert answer.json()["note"] == note and sum(answer.json()["probabilities"].values()) == pytest.approx(1)


def test_api_token_is_required_when_set(client):
    image = {"file": ("x.png", encoded(band_image(0, 9), "PNG"), "image/png")}
    assert client.post("/predict", files=image).status_code == 401
    assert client.post("/predict", files=image, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/predict", files=image, headers=AUTH).status_code == 200


class LiveServer:
    """The app under uvicorn on a free loopback port, in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_load_on_loopback_200_requests_8_concurrent(exported):
    image = encoded(band_image(1, 11), "PNG")
    with LiveServer(create_app(load_predictor(exported["int8_path"]))) as server, httpx.Client() as http:
        def one(_) -> tuple[int, float]:
            started = time.perf_counter()
            answer = http.post(f"{server.url}/predict", files={"file": ("x.png", image, "image/png")}, timeout=60)
            return answer.status_code, time.perf_counter() - started

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(one, range(200)))
    statuses = [status for status, _ in results]
    latencies = sorted(seconds * 1000 for _, seconds in results)
    print(f"200 requests, 8 concurrent: p50 {statistics.median(latencies):.1f} ms, "
          f"p95 {latencies[int(0.95 * len(latencies))]:.1f} ms")
    assert statuses == [200] * 200


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium from the system (the Makefile's setup installs it). CI must have it."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide Chromium at {CHROMIUM} (make setup installs the Debian package)")
    pytest.skip(f"no Chromium at {CHROMIUM}: run `make setup` (installs it) or set MEDKD_CHROMIUM")


def test_web_page_uploads_an_xray_and_shows_the_result_and_heatmap(trained_run, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    upload = passed_test_image(trained_run)  # like the training images: no warning
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"definitely not a PNG")
    noise = tmp_path / "noise.png"  # not an X-ray: the page must warn
    noise.write_bytes(encoded(np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8), "PNG"))
    with LiveServer(create_app(load_predictor(trained_run.folder))) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server.url)
        page.wait_for_selector("text=compact_cnn-")  # the model line, from /health
        page.set_input_files("#file", str(upload))
        page.click("#submit")
        page.wait_for_selector("#label", timeout=30_000)
        expected = predict_files(load_predictor(trained_run.folder), [upload])[0].label
        assert page.inner_text("#label") == expected
        assert (page.eval_on_selector("#heatmap", "img => img.naturalWidth")
                == Image.open(upload).width)  # over the upload
        assert page.query_selector("#ood-warning") is None  # an X-ray like the training images: no warning
        page.set_input_files("#file", str(noise))
        page.click("#submit")
        page.wait_for_selector("#ood-warning", timeout=30_000)
        assert page.inner_text("#ood-warning").startswith("Warning: this image does not look like")
        assert page.inner_text("#label")  # the answer is still shown, under the warning
        page.set_input_files("#file", str(broken))
        page.click("#submit")
        page.wait_for_selector("#error", timeout=30_000)
        assert page.inner_text("#error").startswith("415")
        browser.close()
