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
        err_console.print(f"[bold red]error:[/bold red] {err}")
        raise typer.Exit(EXIT_USAGE) from None
    print_report(report, console)
    if json_out:
        json_out.write_text(json.dumps(report.to_dict(), indent=2))
    if report.leaks:
        raise typer.Exit(EXIT_LEAK)


@app.command("train")
def train(
    recipe: Annotated[Optional[Path], typer.Argument(help="recipe YAML (data and train sections)")] = None,
    out: Annotated[Path, typer.Option(help="run folder; an unfinished run there is resumed")] = Path("runs/train"),
    data: Annotated[Optional[str], typer.Option(help="data path (see `medkd data check --help`)")] = None,
    size: Annotated[Optional[int], typer.Option(help="working resolution in pixels")] = None,
    channels: Annotated[Optional[int], typer.Option(help="1 (grey) or 3 (RGB)")] = None,
    model: Annotated[Optional[str], typer.Option(help="model name (create_model): compact_cnn, resnet18, ...")] = None,
    weights: Annotated[Optional[str], typer.Option(help="none, imagenet, or a checkpoint path")] = None,
    transfer: Annotated[Optional[str], typer.Option(help="scratch, linear or finetune")] = None,
    epochs: Annotated[Optional[int], typer.Option()] = None,
    batch_size: Annotated[Optional[int], typer.Option()] = None,
    lr: Annotated[Optional[float], typer.Option(help="learning rate")] = None,
    seed: Annotated[Optional[int], typer.Option(help="training seed")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch")] = None,
    cache_dir: Annotated[Optional[str], typer.Option(help="decode cache folder")] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Train one model into a run folder: config, per-epoch metrics, best (on validation) and last weights."""
    from medkd.engine import fit
    from medkd.models import ModelError

    overrides = {
        "data": {"path": data, "cache_dir": cache_dir, "preprocessing": {"size": size, "channels": channels}},
        "train": {"model": model, "weights": weights, "transfer": transfer, "epochs": epochs, "batch_size": batch_size,
                  "seed": seed, "threads": threads, "optimizer": {"lr": lr}},
    }
    try:
        config = load_recipe(recipe, overrides)
        folder = fit(config.data, config.train, out, show_progress=progress)
    except (ConfigError, DataError, ModelError) as err:
        err_console.print(f"[bold red]error:[/bold red] {err}")
        raise typer.Exit(EXIT_USAGE) from None
    console.print(f"run folder: {folder}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
