"""`medkd export`, predict and serve: a trained run (or its export) put to use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from medkd.cli.common import ProgressOpt, app, console, err_console, fail, user_errors
from medkd.config import ConfigError, describe
from medkd.errors import MedkdError


@app.command("export")
def export(
    run: Annotated[Path, typer.Argument(help="run folder written by medkd train/distill/run")],
    format: Annotated[str, typer.Option("--format", help="onnx or torchscript")] = "onnx",
    int8: Annotated[bool, typer.Option(
        "--int8", help="onnx: also write a static int8 model, re-evaluated on test")] = False,
    out: Annotated[Optional[Path], typer.Option(help="output folder; default RUN/export")] = None,
    calibration_images: Annotated[int, typer.Option(help="int8: training images for activation ranges")] = 300,
    max_int8_auc_drop: Annotated[float, typer.Option(help="int8: largest allowed fall of validation AUC")] = 0.01,
    on_int8_drop: Annotated[str, typer.Option(help="fail (keep no int8 file) or warn")] = "fail",
    data: Annotated[Optional[str], typer.Option(help="data path, when it moved since training")] = None,
    progress: ProgressOpt = True,
) -> None:
    """Export a run's model (uint8 images in, probabilities out; card in the metadata), checked against PyTorch."""
    from pydantic import ValidationError

    from medkd.deploy import ExportConfig, export_run

    try:
        settings = ExportConfig(format=format, int8=int8, calibration_images=calibration_images,
                                max_int8_auc_drop=max_int8_auc_drop, on_int8_drop=on_int8_drop)
        report = export_run(run, settings, out=out, data_path=data, show_progress=progress)
    except ValidationError as err:
        raise fail(ConfigError("invalid export options\n" + describe(err))) from None
    except (MedkdError, FileNotFoundError) as err:
        raise fail(err) from None
    console.print(f"{report.path}: max |p - p_pytorch| {report.max_abs_difference:.2e} over {report.check_images} "
                  f"validation images, same decisions: {report.same_decisions}")
    for engine, scores in report.val_scores.items():
        console.print(f"  validation {engine:10s} " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    if report.int8_path:
        assert report.int8_auc_drop is not None  # measured with the int8 model
        console.print(f"{report.int8_path}: validation AUC change vs fp32 {-report.int8_auc_drop:+.4f}, same "
                      f"decisions as fp32 on {100 * (report.int8_same_decisions or 0):.1f} % of validation images "
                      "(the engines' test scores are a study report's)")
    for engine, latency in report.latency_ms.items():
        console.print(f"  CPU latency {engine:10s} batch 1: median {latency['median']:.2f} ms, p95 "
                      f"{latency['p95']:.2f} ms ({report.threads} threads)")
    for note in report.notes:
        err_console.print(f"[bold yellow]warning:[/bold yellow] {note}")


@app.command("predict")
def predict(
    model: Annotated[Path, typer.Argument(help="run folder, or .onnx file from medkd export")],
    paths: Annotated[list[Path], typer.Argument(help="image files (JPEG, PNG, BMP, TIFF, DICOM, HDF5 slices) or "
                                                     "folders; for a model trained on NIfTI volumes, patient folders")],
    out: Annotated[Optional[Path], typer.Option(help="write the table here too (.csv or .json)")] = None,
    heatmap: Annotated[Optional[Path], typer.Option(help="folder for Grad-CAM overlays")] = None,
    slice_index: Annotated[Optional[list[int]], typer.Option(
        "--slice", help="NIfTI volumes: score this slice of each (repeatable); default: every slice with brain",
    )] = None,
    heatmap_channel: Annotated[int, typer.Option(
        help="images of several channels (MRI modalities): the one the heatmap is drawn on, e.g. 3 for FLAIR")] = 0,
) -> None:
    """Predict on files with the model's own preprocessing; unreadable files are listed, the rest still run."""
    from rich.table import Table
    from rich.text import Text

    from medkd.deploy import input_root, load_predictor, predict_files, write_predictions

    with user_errors():
        predictor = load_predictor(model)
        results = predict_files(predictor, paths, heatmap_dir=heatmap, slices=slice_index,
                                heatmap_channel=heatmap_channel)
    predicted = [result for result in results if result.error is None]
    if predicted:
        root = input_root(paths)
        table = Table(title=f"{predictor.card['model_id']} ({predictor.engine})",
                      caption=Text(f"files in {root}") if root else None)
        table.add_column("file", overflow="fold")  # wrapped, never cut: a person must tell the files apart
        for name in predictor.classes:
            table.add_column(name, justify="right", no_wrap=True)
        table.add_column("label", no_wrap=True)
        table.add_column("note", overflow="fold")
        for result in predicted:
            warning = f"OUT OF DISTRIBUTION: {result.ood_reason}" if result.in_distribution is False else None
            note = "; ".join(text for text in (warning, result.note, result.heatmap) if text)
            assert result.probabilities is not None  # a file without an error was predicted
            table.add_row(Text(result.name), *(f"{result.probabilities[c]:.4f}" for c in predictor.classes),
                          result.label, Text(note))  # Text: names are not rich markup
        console.print(table)
        flagged = sum(result.in_distribution is False for result in predicted)
        if flagged:
            err_console.print(f"[bold yellow]warning:[/bold yellow] {flagged} of {len(predicted)} image(s) do not look "
                              "like what the model was trained on (OUT OF DISTRIBUTION above): do not trust their "
                              "answers")
    if out:
        write_predictions(results, predictor.classes, out)
    failed = [result for result in results if result.error is not None]
    if failed:
        err_console.print(f"[bold yellow]{len(failed)} of {len(results)} file(s) could not be read:[/bold yellow]")
        for result in failed:  # one line each, however long: soft-wrapped by the terminal, not broken by rich
            err_console.print(f"  {result.name}: {result.error}", soft_wrap=True, markup=False, highlight=False)


@app.command("serve")
def serve(
    model: Annotated[Path, typer.Argument(help="run folder, or .onnx file from medkd export")],
    host: Annotated[str, typer.Option(help="address to listen on; 0.0.0.0 exposes it to the network")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    token: Annotated[Optional[str], typer.Option(envvar="MEDKD_API_TOKEN",
                                                 help="require 'Authorization: Bearer TOKEN' on /predict")] = None,
    max_upload_mb: Annotated[float, typer.Option(help="largest accepted upload")] = 20.0,
    max_pixels: Annotated[int, typer.Option(help="largest accepted decoded image (width x height)")] = 50_000_000,
    timeout: Annotated[float, typer.Option(help="seconds before a prediction answers 504")] = 30.0,
    threads: Annotated[Optional[int], typer.Option(help="ONNX Runtime threads")] = None,
) -> None:
    """Serve a model over HTTP: POST /predict, GET /health, and a web page at /."""
    from pydantic import ValidationError

    from medkd.deploy import ServeConfig, load_predictor
    from medkd.deploy import serve as run_server

    try:
        settings = ServeConfig(host=host, port=port, token=token, max_upload_bytes=int(max_upload_mb * 1e6),
                               max_pixels=max_pixels, timeout_seconds=timeout)
        predictor = load_predictor(model, threads)
    except ValidationError as err:
        raise fail(ConfigError("invalid serve options\n" + describe(err))) from None
    except MedkdError as err:
        raise fail(err) from None
    run_server(predictor, settings)
