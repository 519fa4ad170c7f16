"""What every `medkd` command shares: the app, the consoles, the one handler of a user's errors, option types."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

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


TRAINING_COMMANDS = {"train", "distill", "pretrain", "run"}  # the commands that run Lightning


@app.callback()
def _setup(ctx: typer.Context,
           verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show debug messages")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False)])
    logging.getLogger("medkd").setLevel(logging.DEBUG if verbose else logging.INFO)
    from medkd.data import pydicom_messages_to_debug_log

    pydicom_messages_to_debug_log()
    if ctx.invoked_subcommand in TRAINING_COMMANDS and "--help" not in sys.argv:  # help needs no Lightning
        lightning_records_once()


def lightning_records_once() -> None:
    """Lightning gives its `lightning` logger a console handler of its own when it is imported, and the record
    then also reaches medkd's: each of its lines would print twice. Imported here (the command imports it anyway),
    its handler is removed, so that its records print once, through medkd's."""
    import lightning  # noqa: F401  (the import adds the handler)

    logger = logging.getLogger("lightning")
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler:
            logger.removeHandler(handler)


# Options shared by several commands.
RecipeArg = Annotated[Optional[Path], typer.Argument(help="recipe YAML (data, train, distill sections)")]
RunFolderOpt = Annotated[Path, typer.Option(help="run folder; an unfinished run there is resumed")]
DataOpt = Annotated[Optional[str], typer.Option(help="data path (see `medkd data check --help`)")]
SizeOpt = Annotated[Optional[int], typer.Option(help="working resolution in pixels")]
TrackingOpt = Annotated[Optional[str], typer.Option(
    help="log to an experiment tracker: mlflow (a local store beside the runs) or mlflow:URI (needs medkd[mlflow])")]
ChannelsOpt = Annotated[Optional[int], typer.Option(
    help="1 (grey), 3 (RGB) or the data's own (e.g. 4 MRI modalities); default: the data's own where neither, else 3")]
WeightsOpt = Annotated[Optional[str], typer.Option(help="none, imagenet, or a checkpoint path")]
TransferOpt = Annotated[Optional[str], typer.Option(
    help="a registered transfer mode: scratch, linear (frozen backbone, head on cached features), finetune, lp-ft "
         "(linear probe, then all layers); its own settings: --set train.transfer.KEY=VALUE or a recipe")]
IntOpt = Annotated[Optional[int], typer.Option()]
LrOpt = Annotated[Optional[float], typer.Option(help="learning rate")]
SeedOpt = Annotated[Optional[int], typer.Option(help="training seed")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="CPU threads for torch")]
WorkersOpt = Annotated[Optional[int], typer.Option(help="data loader processes for augmentation (default: the "
                                                        "recipe's, auto: none on a CPU, up to 8 beside a GPU)")]
AcceleratorOpt = Annotated[Optional[str], typer.Option(help="Lightning accelerator: auto, cpu, gpu")]
DevicesOpt = Annotated[Optional[str], typer.Option(
    help="devices (one process each) per machine: a number or auto; more than one trains with DDP "
         "(docs/distributed.md)")]
NodesOpt = Annotated[Optional[int], typer.Option(
    help="machines of a multi-node run (how to launch: docs/distributed.md)")]
CacheOpt = Annotated[Optional[str], typer.Option(help="decode cache folder")]
ProgressOpt = Annotated[bool, typer.Option(help="show progress bars")]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", help="any recipe key, as dotted.key=value (a YAML value; repeatable), validated as the recipe is, "
                  "e.g. --set train.transfer.probe.epochs=5 --set distill.temperature=2")]


def dotted_overrides(pairs: list[str] | None) -> dict:
    """Nested recipe overrides from `--set a.b.c=value` pairs; the value is read as YAML (5, 0.1, true, [1, 2],
    {name: lp-ft})."""
    import yaml

    from medkd.config import ConfigError

    overrides: dict = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
            raise ConfigError(f"--set {pair!r}: write it as dotted.key=value, e.g. --set train.epochs=5")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {pair!r}: the value is not valid YAML ({err})") from None
        *parents, leaf = key.strip().split(".")
        node = overrides
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {pair!r}: {part} was given a value by an earlier --set")
        node[leaf] = value
    return overrides


def runtime_overrides(*, threads: int | None = None, workers: int | None = None, accelerator: str | None = None,
                      devices: str | None = None, num_nodes: int | None = None, tracking: str | None = None) -> dict:
    """A recipe's runtime section from the command line (None: keep the recipe's value)."""
    return {"threads": threads, "num_workers": workers, "accelerator": accelerator, "num_nodes": num_nodes,
            "devices": int(devices) if devices is not None and devices.isdigit() else devices, "tracking": tracking}
