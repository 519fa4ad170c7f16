"""The `medkd` command: parses options and calls the packages; no logic of its own."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

from medkd.config import ConfigError, load_recipe
from medkd.data import DataError, check_data, prepare
from medkd.data.checks import print_report

app = typer.Typer(help="Small, fast, trustworthy medical image classifiers.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
data_app = typer.Typer(help="Inspect and prepare data sources.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)

EXIT_LEAK = 1
EXIT_USAGE = 2


def fail(err: Exception) -> typer.Exit:
    """Print `err` for the user; the caller raises the returned exit (code 2: bad settings or data)."""
    err_console.print(f"[bold red]error:[/bold red] {err}")
    return typer.Exit(EXIT_USAGE)


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show debug messages")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False)])
    logging.getLogger("medkd").setLevel(logging.DEBUG if verbose else logging.INFO)


@data_app.command("check")
def data_check(
    recipe: Annotated[Optional[Path], typer.Argument(help="recipe YAML whose data section is checked")] = None,
    data: Annotated[Optional[str], typer.Option(help="data path (folder, .npz, .csv, NumPy folder, medmnist:NAME[@SIZE]); "
                                                "relative paths are also looked for under $MEDKD_DATA")] = None,
    source: Annotated[Optional[str], typer.Option(help="auto, folder, medmnist, numpy or csv")] = None,
    size: Annotated[Optional[int], typer.Option(help="working resolution in pixels")] = None,
    channels: Annotated[Optional[int], typer.Option(help="1 (grey) or 3 (RGB)")] = None,
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
    try:
        config = load_recipe(recipe, overrides).data
        report = check_data(prepare(config), strict=strict)
    except (ConfigError, DataError) as err:
        raise fail(err) from None
    print_report(report, console)
    if json_out:
        json_out.write_text(json.dumps(report.to_dict(), indent=2))
    if report.leaks:
        raise typer.Exit(EXIT_LEAK)


# Options shared by the commands that train (train, distill).
RecipeArg = Annotated[Optional[Path], typer.Argument(help="recipe YAML (data, train, distill sections)")]
DataOpt = Annotated[Optional[str], typer.Option(help="data path (see `medkd data check --help`)")]
SizeOpt = Annotated[Optional[int], typer.Option(help="working resolution in pixels")]
ChannelsOpt = Annotated[Optional[int], typer.Option(help="1 (grey) or 3 (RGB)")]
WeightsOpt = Annotated[Optional[str], typer.Option(help="none, imagenet, or a checkpoint path")]
TransferOpt = Annotated[Optional[str], typer.Option(help="scratch, linear or finetune")]
IntOpt = Annotated[Optional[int], typer.Option()]
LrOpt = Annotated[Optional[float], typer.Option(help="learning rate")]
SeedOpt = Annotated[Optional[int], typer.Option(help="training seed")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="CPU threads for torch")]
CacheOpt = Annotated[Optional[str], typer.Option(help="decode cache folder")]
ProgressOpt = Annotated[bool, typer.Option(help="show progress bars")]


def training_overrides(*, data, cache_dir, size, channels, model, weights, transfer, epochs, batch_size, lr, seed,
                       threads) -> dict:
    """Recipe overrides from the options every training command shares (None: keep the recipe's value)."""
    return {
        "data": {"path": data, "cache_dir": cache_dir, "preprocessing": {"size": size, "channels": channels}},
        "train": {"model": model, "weights": weights, "transfer": transfer, "epochs": epochs, "batch_size": batch_size,
                  "seed": seed, "threads": threads, "optimizer": {"lr": lr}},
    }


@app.command("train")
def train(
    recipe: RecipeArg = None,
    out: Annotated[Path, typer.Option(help="run folder; an unfinished run there is resumed")] = Path("runs/train"),
    data: DataOpt = None, size: SizeOpt = None, channels: ChannelsOpt = None,
    model: Annotated[Optional[str], typer.Option(help="model name (create_model): compact_cnn, resnet18, ...")] = None,
    weights: WeightsOpt = None, transfer: TransferOpt = None, epochs: IntOpt = None, batch_size: IntOpt = None,
    lr: LrOpt = None, seed: SeedOpt = None, threads: ThreadsOpt = None, cache_dir: CacheOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Train one model into a run folder: config, per-epoch metrics, best (on validation) and last weights."""
    from medkd.engine import fit
    from medkd.models import ModelError

    overrides = training_overrides(data=data, cache_dir=cache_dir, size=size, channels=channels, model=model,
                                   weights=weights, transfer=transfer, epochs=epochs, batch_size=batch_size, lr=lr,
                                   seed=seed, threads=threads)
    try:
        config = load_recipe(recipe, overrides)
        folder = fit(config.data, config.train, out, show_progress=progress)
    except (ConfigError, DataError, ModelError) as err:
        raise fail(err) from None
    console.print(f"run folder: {folder}")


@app.command("distill")
def distill(
    recipe: RecipeArg = None,
    out: Annotated[Path, typer.Option(help="run folder (with --sweep: a folder of runs)")] = Path("runs/distill"),
    teacher: Annotated[Optional[list[str]], typer.Option(help="teacher run folder; repeat for an ensemble")] = None,
    student: Annotated[Optional[str], typer.Option(help="student model name (create_model)")] = None,
    loss: Annotated[Optional[str], typer.Option(help="kd, dkd, lskd or hint")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="softening temperature T")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="weight of the distillation term (1 - alpha: labels)")] = None,
    teacher_outputs: Annotated[Optional[str], typer.Option(help="cached or online")] = None,
    hint_student_layer: Annotated[Optional[str], typer.Option(help="feature hint: student module name")] = None,
    hint_teacher_layer: Annotated[Optional[str], typer.Option(help="feature hint: teacher module name")] = None,
    sweep: Annotated[bool, typer.Option(help="distil from each teacher alone and from their ensemble; print a table")] = False,
    data: DataOpt = None, size: SizeOpt = None, channels: ChannelsOpt = None, weights: WeightsOpt = None,
    transfer: TransferOpt = None, epochs: IntOpt = None, batch_size: IntOpt = None, lr: LrOpt = None,
    seed: SeedOpt = None, threads: ThreadsOpt = None, cache_dir: CacheOpt = None, progress: ProgressOpt = True,
) -> None:
    """Distil a student from trained teacher run(s) into a run folder, with teacher-student agreement."""
    from medkd.distillation import DistillationError
    from medkd.distillation import distill as run_distillation
    from medkd.distillation import sweep as run_sweep
    from medkd.models import ModelError

    overrides = training_overrides(data=data, cache_dir=cache_dir, size=size, channels=channels, model=student,
                                   weights=weights, transfer=transfer, epochs=epochs, batch_size=batch_size, lr=lr,
                                   seed=seed, threads=threads)
    hint = {"student_layer": hint_student_layer, "teacher_layer": hint_teacher_layer}
    overrides["distill"] = {"teachers": teacher or None, "loss": loss, "temperature": temperature, "alpha": alpha,
                            "teacher_outputs": teacher_outputs, "hint": hint if any(hint.values()) else None}
    try:
        config = load_recipe(recipe, overrides)
        if config.distill is None:
            raise ConfigError("no teacher: give --teacher RUN_FOLDER (repeat for several) or a distill section")
        if sweep:
            table = run_sweep(config.data, config.train, config.distill, out, show_progress=progress)
            console.print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
            console.print(f"sweep table: {out / 'sweep.csv'}")
            return
        folder = run_distillation(config.data, config.train, config.distill, out, show_progress=progress)
    except (ConfigError, DataError, ModelError, DistillationError) as err:
        raise fail(err) from None
    console.print(f"run folder: {folder}")


@app.command("run")
def run(
    recipe: Annotated[Path, typer.Argument(help="study recipe YAML (data, train, stages, presets)")],
    preset: Annotated[Optional[str], typer.Option(help="a preset of the recipe, e.g. quick or full")] = None,
    out: Annotated[Optional[Path], typer.Option(help="study folder; default runs/<recipe name>")] = None,
    data: DataOpt = None, seeds: Annotated[Optional[int], typer.Option(help="seeds per stage")] = None,
    weights: Annotated[Optional[str], typer.Option(help="weights of every stage (e.g. none where ImageNet "
                                                         "weights cannot be fetched)")] = None,
    cache_dir: CacheOpt = None, progress: ProgressOpt = True,
) -> None:
    """Run a whole study: every stage and seed, teachers first, finished stages skipped; print the comparison."""
    from medkd.distillation import DistillationError
    from medkd.models import ModelError
    from medkd.study import print_summary, run_study, summarise, with_weights

    try:
        config = load_recipe(recipe, {"data": {"path": data, "cache_dir": cache_dir}, "seeds": seeds}, preset=preset)
        if weights is not None:
            config = with_weights(config, weights)
        if not config.stages:
            raise ConfigError(f"{recipe} has no stages: list the models to compare under `stages:`")
        folder = out or Path("runs") / config.name
        runs = run_study(config, folder, show_progress=progress)
    except (ConfigError, DataError, ModelError, DistillationError) as err:
        raise fail(err) from None
    summary = summarise(runs)
    summary.to_csv(folder / "summary.csv")
    print_summary(summary, config, console)
    write_study_report(folder)


def write_study_report(folder: Path) -> None:
    from medkd.report import ReportError, write_report

    try:
        markdown_path, html_path = write_report(folder)
    except ReportError as err:
        raise fail(err) from None
    console.print(f"study folder: {folder} (runs.csv, summary.csv)\nreport: {html_path} and {markdown_path}")


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
    from medkd.data.table import SPLITS
    from medkd.evaluation import EvaluationConfig, evaluate_run
    from medkd.evaluation.report import print_evaluation
    from medkd.models import ModelError

    if split not in SPLITS:
        raise fail(ValueError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}"))
    try:
        result = evaluate_run(run, split, settings=EvaluationConfig(bootstrap_resamples=bootstrap), data_path=data,
                              cache_dir=cache_dir, efficiency=efficiency, show_progress=progress)
    except (DataError, ModelError, FileNotFoundError) as err:
        raise fail(err) from None
    print_evaluation(result, console)
    if json_out:
        json_out.write_text(json.dumps(result.to_dict(), indent=2))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
