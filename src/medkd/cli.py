"""The `medkd` command: parses options and calls the packages; no logic of its own."""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

from medkd.config import ConfigError, describe, load_recipe
from medkd.data import available_sources, check_data, prepare, print_report
from medkd.distillation import LOGIT_LOSSES
from medkd.errors import MedkdError

app = typer.Typer(help="Small, fast, trustworthy medical image classifiers.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
data_app = typer.Typer(help="Inspect and prepare data sources.", no_args_is_help=True)
app.add_typer(data_app, name="data")
# Written to a file or a pipe (a log), rich assumes 80 columns and cuts table cells to '0.9…'.
LOG_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
console = Console(width=LOG_WIDTH)
err_console = Console(stderr=True, width=LOG_WIDTH)

EXIT_LEAK = 1
EXIT_USAGE = 2


@contextmanager
def user_errors():
    """A MedkdError (bad settings or data, a model that cannot load, ...) inside becomes its message on stderr and
    exit code 2, without a traceback."""
    try:
        yield
    except MedkdError as err:
        raise fail(err) from None


def fail(err: Exception) -> typer.Exit:
    """Print `err` for the user; the caller raises the returned exit (code 2: bad settings or data)."""
    err_console.print(f"[bold red]error:[/bold red] {err}")
    return typer.Exit(EXIT_USAGE)


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show debug messages")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False)])
    logging.getLogger("medkd").setLevel(logging.DEBUG if verbose else logging.INFO)


# Options shared by several commands.
RecipeArg = Annotated[Optional[Path], typer.Argument(help="recipe YAML (data, train, distill sections)")]
RunFolderOpt = Annotated[Path, typer.Option(help="run folder; an unfinished run there is resumed")]
DataOpt = Annotated[Optional[str], typer.Option(help="data path (see `medkd data check --help`)")]
SizeOpt = Annotated[Optional[int], typer.Option(help="working resolution in pixels")]
ChannelsOpt = Annotated[Optional[int], typer.Option(help="1 (grey) or 3 (RGB)")]
WeightsOpt = Annotated[Optional[str], typer.Option(help="none, imagenet, or a checkpoint path")]
TransferOpt = Annotated[Optional[str], typer.Option(help="scratch, linear, finetune, or lp-ft (linear probe, then all layers)")]
IntOpt = Annotated[Optional[int], typer.Option()]
LrOpt = Annotated[Optional[float], typer.Option(help="learning rate")]
SeedOpt = Annotated[Optional[int], typer.Option(help="training seed")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="CPU threads for torch")]
WorkersOpt = Annotated[Optional[int], typer.Option(help="data loader processes for augmentation (default: the "
                                                        "recipe's, auto: none on a CPU, up to 8 beside a GPU)")]
CacheOpt = Annotated[Optional[str], typer.Option(help="decode cache folder")]
ProgressOpt = Annotated[bool, typer.Option(help="show progress bars")]


@data_app.command("check")
def data_check(
    recipe: Annotated[Optional[Path], typer.Argument(help="recipe YAML whose data section is checked")] = None,
    data: Annotated[Optional[str], typer.Option(help="data path (folder, .npz, .csv, NumPy folder, medmnist:NAME[@SIZE]); "
                                                "relative paths are also looked for under $MEDKD_DATA")] = None,
    source: Annotated[Optional[str], typer.Option(help=f"auto, or one of {', '.join(available_sources())}")] = None,
    size: SizeOpt = None, channels: ChannelsOpt = None,
    resize: Annotated[Optional[str], typer.Option(help="squash, pad or crop")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed of the patient-level split")] = None,
    on_bad_file: Annotated[Optional[str], typer.Option(help="skip (list them) or fail")] = None,
    cache_dir: Annotated[Optional[str], typer.Option(help="decode cache folder")] = None,
    strict: Annotated[bool, typer.Option(help="count patient ids shared by source splits as a leak")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the full report as JSON here")] = None,
) -> None:
    """Split sizes, classes, patients, leaks, duplicates, image properties and bad files of a data source.

    Exit code 1 when a leak between splits is found, 2 on a data or settings error.
    """
    overrides = {"data": {
        "path": data, "source": source, "on_bad_file": on_bad_file, "cache_dir": cache_dir,
        "preprocessing": {"size": size, "channels": channels, "resize": resize},
        "split": {"seed": seed},
    }}
    with user_errors():
        config = load_recipe(recipe, overrides).data
        report = check_data(prepare(config), strict=strict)
    print_report(report, console)
    if json_out:
        json_out.write_text(json.dumps(report.to_dict(), indent=2))
    if report.leaks:
        raise typer.Exit(EXIT_LEAK)


def data_overrides(data, cache_dir, size, channels) -> dict:
    """The recipe's data section as the data options change it (None: keep the recipe's value)."""
    return {"path": data, "cache_dir": cache_dir, "preprocessing": {"size": size, "channels": channels}}


def training_overrides(*, data, cache_dir, size, channels, model, weights, transfer, epochs, batch_size, lr, seed,
                       threads, workers) -> dict:
    """Recipe overrides from the options every training command shares (None: keep the recipe's value)."""
    return {
        "data": data_overrides(data, cache_dir, size, channels),
        "train": {"model": model, "weights": weights, "transfer": transfer, "epochs": epochs, "batch_size": batch_size,
                  "seed": seed, "optimizer": {"lr": lr}, "runtime": {"threads": threads, "num_workers": workers}},
    }


@app.command("train")
def train(
    recipe: RecipeArg = None,
    out: RunFolderOpt = Path("runs/train"),
    data: DataOpt = None, size: SizeOpt = None, channels: ChannelsOpt = None,
    model: Annotated[Optional[str], typer.Option(help="model name (create_model): compact_cnn, resnet18, ...")] = None,
    weights: WeightsOpt = None, transfer: TransferOpt = None, epochs: IntOpt = None, batch_size: IntOpt = None,
    lr: LrOpt = None, seed: SeedOpt = None, threads: ThreadsOpt = None, workers: WorkersOpt = None,
    cache_dir: CacheOpt = None, progress: ProgressOpt = True,
) -> None:
    """Train one model into a run folder: config, per-epoch metrics, best (on validation) and last weights."""
    from medkd.engine import fit

    overrides = training_overrides(data=data, cache_dir=cache_dir, size=size, channels=channels, model=model,
                                   weights=weights, transfer=transfer, epochs=epochs, batch_size=batch_size, lr=lr,
                                   seed=seed, threads=threads, workers=workers)
    with user_errors():
        config = load_recipe(recipe, overrides)
        folder = fit(config.data, config.train, out, show_progress=progress)
    console.print(f"run folder: {folder}")


@app.command("pretrain")
def pretrain(
    recipe: RecipeArg = None,
    out: RunFolderOpt = Path("runs/pretrain"),
    method: Annotated[Optional[str], typer.Option(help="moco (MoCo v2) or simclr")] = None,
    model: Annotated[Optional[str], typer.Option(help="backbone name (create_model)")] = None,
    data: DataOpt = None, size: SizeOpt = None, channels: ChannelsOpt = None, weights: WeightsOpt = None,
    epochs: IntOpt = None, batch_size: IntOpt = None, lr: LrOpt = None, seed: SeedOpt = None,
    threads: ThreadsOpt = None, cache_dir: CacheOpt = None, progress: ProgressOpt = True,
) -> None:
    """Self-supervised pretraining on the data's unlabelled images (never its test split); writes a backbone
    checkpoint for `--weights RUN/backbone.safetensors`."""
    from medkd.files import BACKBONE
    from medkd.pretrain import pretrain as run_pretraining

    with user_errors():
        config = load_recipe(recipe, {"data": data_overrides(data, cache_dir, size, channels), "pretrain": {
            "method": method, "model": model, "weights": weights, "epochs": epochs, "batch_size": batch_size,
            "lr": lr, "seed": seed, "runtime": {"threads": threads}}})
        folder = run_pretraining(config.data, config.pretrain, out, show_progress=progress)
    console.print(f"run folder: {folder}\nuse it with: --weights {folder / BACKBONE}")


@app.command("distill")
def distill(
    recipe: RecipeArg = None,
    out: Annotated[Path, typer.Option(help="run folder (with --sweep: a folder of runs)")] = Path("runs/distill"),
    teacher: Annotated[Optional[list[str]], typer.Option(help="teacher run folder; repeat for an ensemble")] = None,
    student: Annotated[Optional[str], typer.Option(help="student model name (create_model)")] = None,
    loss: Annotated[Optional[str], typer.Option(help=f"a logit loss ({', '.join(sorted(LOGIT_LOSSES))}) or hint")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="softening temperature T")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="weight of the distillation term (1 - alpha: labels)")] = None,
    teacher_outputs: Annotated[Optional[str], typer.Option(help="cached or online")] = None,
    hint_student_layer: Annotated[Optional[str], typer.Option(help="feature hint: student module name")] = None,
    hint_teacher_layer: Annotated[Optional[str], typer.Option(help="feature hint: teacher module name")] = None,
    sweep: Annotated[bool, typer.Option(help="distil from each teacher alone and from their ensemble; print a table")] = False,
    data: DataOpt = None, size: SizeOpt = None, channels: ChannelsOpt = None, weights: WeightsOpt = None,
    transfer: TransferOpt = None, epochs: IntOpt = None, batch_size: IntOpt = None, lr: LrOpt = None,
    seed: SeedOpt = None, threads: ThreadsOpt = None, workers: WorkersOpt = None, cache_dir: CacheOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Distil a student from trained teacher run(s) into a run folder, with teacher-student agreement."""
    from medkd.distillation import distill as run_distillation
    from medkd.distillation import sweep as run_sweep

    overrides = training_overrides(data=data, cache_dir=cache_dir, size=size, channels=channels, model=student,
                                   weights=weights, transfer=transfer, epochs=epochs, batch_size=batch_size, lr=lr,
                                   seed=seed, threads=threads, workers=workers)
    hint = {"student_layer": hint_student_layer, "teacher_layer": hint_teacher_layer}
    overrides["distill"] = {"teachers": teacher or None, "loss": loss, "temperature": temperature, "alpha": alpha,
                            "teacher_outputs": teacher_outputs, "hint": hint if any(hint.values()) else None}
    with user_errors():
        config = load_recipe(recipe, overrides)
        if config.distill is None:
            raise ConfigError("no teacher: give --teacher RUN_FOLDER (repeat for several) or a distill section")
        if sweep:
            table = run_sweep(config.data, config.train, config.distill, out, show_progress=progress)
            console.print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
            console.print(f"sweep table: {out / 'sweep.csv'}")
            return
        folder = run_distillation(config.data, config.train, config.distill, out, show_progress=progress)
    console.print(f"run folder: {folder}")


@app.command("run")
def run(
    recipe: Annotated[Path, typer.Argument(help="study recipe YAML (data, train, stages, presets)")],
    preset: Annotated[Optional[str], typer.Option(help="a preset of the recipe, e.g. quick or full")] = None,
    out: Annotated[Optional[Path], typer.Option(help="study folder; default runs/<recipe name>")] = None,
    data: DataOpt = None, seeds: Annotated[Optional[int], typer.Option(help="seeds per stage")] = None,
    weights: Annotated[Optional[str], typer.Option(help="weights of every stage (e.g. none where ImageNet "
                                                         "weights cannot be fetched)")] = None,
    stage: Annotated[Optional[list[str]], typer.Option(
        help="run only this stage, and the stages it needs if unfinished (repeatable); the report covers all")] = None,
    workers: WorkersOpt = None, cache_dir: CacheOpt = None, progress: ProgressOpt = True,
) -> None:
    """Run a whole study: every stage and seed, teachers first, finished stages skipped; print the comparison."""
    from medkd.study import print_summary, run_study, summarise, with_weights

    with user_errors():
        config = load_recipe(recipe, {"data": {"path": data, "cache_dir": cache_dir}, "seeds": seeds,
                                      "train": {"runtime": {"num_workers": workers}}}, preset=preset)
        if weights is not None:
            config = with_weights(config, weights)
        if not config.stages:
            raise ConfigError(f"{recipe} has no stages: list the models to compare under `stages:`")
        folder = out or Path("runs") / config.name
        runs = run_study(config, folder, stages=stage, show_progress=progress)
    print_summary(summarise(runs), config, console)
    console.print(f"study folder: {folder} (runs.csv, summary.csv)")
    console.print(f"report: {folder / 'report.html'} and {folder / 'report.md'}")


def write_study_report(folder: Path) -> None:
    from medkd.report import write_report

    with user_errors():
        markdown_path, html_path = write_report(folder)
    console.print(f"report: {html_path} and {markdown_path}")


@app.command("report")
def report(study: Annotated[Path, typer.Argument(help="study folder written by `medkd run`")]) -> None:
    """(Re)write a study's report.md and self-contained report.html from its folder."""
    write_study_report(study)


@app.command("evaluate")
def evaluate(
    run: Annotated[Path, typer.Argument(help="run folder written by medkd train/distill")],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    data: Annotated[Optional[str], typer.Option(help="data path, when it moved since training")] = None,
    cache_dir: Annotated[Optional[str], typer.Option(help="decode cache folder")] = None,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples for confidence intervals (0: none)")] = 1000,
    efficiency: Annotated[bool, typer.Option(help="also measure parameters, MACs, size, CPU latency/throughput")] = True,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the result as JSON here")] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Score a run's best model on one split: metrics at argmax and at its validation-chosen threshold, with CIs."""
    from medkd.data import SPLITS
    from medkd.evaluation import EvaluationConfig, evaluate_run
    from medkd.evaluation import print_evaluation

    if split not in SPLITS:
        raise fail(ValueError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}"))
    try:
        result = evaluate_run(run, split, settings=EvaluationConfig(bootstrap_resamples=bootstrap), data_path=data,
                              cache_dir=cache_dir, efficiency=efficiency, show_progress=progress)
    except (MedkdError, FileNotFoundError) as err:
        raise fail(err) from None
    print_evaluation(result, console)
    if json_out:
        json_out.write_text(json.dumps(result.to_dict(), indent=2))


@app.command("export")
def export(
    run: Annotated[Path, typer.Argument(help="run folder written by medkd train/distill/run")],
    format: Annotated[str, typer.Option("--format", help="onnx or torchscript")] = "onnx",
    int8: Annotated[bool, typer.Option("--int8", help="onnx: also write a static int8 model, re-evaluated on test")] = False,
    out: Annotated[Optional[Path], typer.Option(help="output folder; default RUN/export")] = None,
    calibration_images: Annotated[int, typer.Option(help="int8: training images for activation ranges")] = 300,
    max_int8_auc_drop: Annotated[float, typer.Option(help="int8: largest allowed fall of test AUC")] = 0.01,
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
                  f"test images, same decisions: {report.same_decisions}")
    for engine, scores in report.test_scores.items():
        console.print(f"  test {engine:10s} " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    if report.int8_path:
        console.print(f"{report.int8_path}: test AUC change vs fp32 {-report.int8_auc_drop:+.4f}")
    for note in report.notes:
        err_console.print(f"[bold yellow]warning:[/bold yellow] {note}")


@app.command("predict")
def predict(
    model: Annotated[Path, typer.Argument(help="run folder, or .onnx file from medkd export")],
    paths: Annotated[list[Path], typer.Argument(help="image files (JPEG, PNG, BMP, TIFF, DICOM) or folders")],
    out: Annotated[Optional[Path], typer.Option(help="write the table here too (.csv or .json)")] = None,
    heatmap: Annotated[Optional[Path], typer.Option(help="folder for Grad-CAM overlays")] = None,
) -> None:
    """Predict on files with the model's own preprocessing; unreadable files are listed, the rest still run."""
    from rich.table import Table
    from rich.text import Text

    from medkd.deploy import input_root, load_predictor, predict_files, write_predictions

    with user_errors():
        predictor = load_predictor(model)
        results = predict_files(predictor, paths, heatmap_dir=heatmap)
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
            table.add_row(Text(result.name), *(f"{result.probabilities[c]:.4f}" for c in predictor.classes),
                          result.label, Text(note))  # Text: names are not rich markup
        console.print(table)
        flagged = sum(result.in_distribution is False for result in predicted)
        if flagged:
            err_console.print(f"[bold yellow]warning:[/bold yellow] {flagged} of {len(predicted)} image(s) do not look "
                              "like what the model was trained on (OUT OF DISTRIBUTION above): do not trust their answers")
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
