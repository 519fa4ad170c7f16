"""`medkd data check`, train, pretrain, distill, run, report and evaluate: options in, the packages do the work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from medkd.cli.common import (
    EXIT_LEAK,
    AcceleratorOpt,
    CacheOpt,
    ChannelsOpt,
    DataOpt,
    DevicesOpt,
    IntOpt,
    LrOpt,
    NodesOpt,
    ProgressOpt,
    RecipeArg,
    RunFolderOpt,
    SeedOpt,
    SetOpt,
    SizeOpt,
    ThreadsOpt,
    TrackingOpt,
    TransferOpt,
    WeightsOpt,
    WorkersOpt,
    app,
    console,
    data_app,
    dotted_overrides,
    fail,
    runtime_overrides,
    user_errors,
)
from medkd.config import ConfigError, load_data_settings, load_recipe, merge
from medkd.device import is_primary_process
from medkd.errors import MedkdError
from medkd.files import REPORT_MARKDOWN, SWEEP


@data_app.command("check")
def data_check(
    recipe: Annotated[Optional[Path], typer.Argument(help="recipe YAML whose data section is checked")] = None,
    data: Annotated[Optional[str], typer.Option(
        help="data path (folder, .npz, .csv, NumPy folder, HDF5 slices, NIfTI patient folders, medmnist:NAME[@SIZE]); "
             "relative paths are also looked for under $MEDKD_DATA")] = None,
    source: Annotated[Optional[str], typer.Option(
        help="auto (from the layout), or a registered source: folder, csv, numpy, medmnist, hdf5, nifti, ...")] = None,
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
    from medkd.data import check_data, prepare, print_report

    with user_errors():
        config = load_data_settings(recipe, overrides)
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
                       threads, workers, accelerator, devices, num_nodes, tracking=None) -> dict:
    """Recipe overrides from the options every training command shares (None: keep the recipe's value)."""
    return {
        "data": data_overrides(data, cache_dir, size, channels),
        "train": {"model": model, "weights": weights, "transfer": transfer, "epochs": epochs, "batch_size": batch_size,
                  "seed": seed, "optimiser": {"lr": lr},
                  "runtime": runtime_overrides(threads=threads, workers=workers, accelerator=accelerator,
                                               devices=devices, num_nodes=num_nodes, tracking=tracking)},
    }


@app.command("train")
def train(
    recipe: RecipeArg = None,
    out: RunFolderOpt = Path("runs/train"),
    data: DataOpt = None, size: SizeOpt = None, channels: ChannelsOpt = None,
    model: Annotated[Optional[str], typer.Option(help="model name (create_model): compact_cnn, resnet18, ...")] = None,
    weights: WeightsOpt = None, transfer: TransferOpt = None, epochs: IntOpt = None, batch_size: IntOpt = None,
    lr: LrOpt = None, seed: SeedOpt = None, threads: ThreadsOpt = None, workers: WorkersOpt = None,
    accelerator: AcceleratorOpt = None, devices: DevicesOpt = None, num_nodes: NodesOpt = None,
    tracking: TrackingOpt = None, cache_dir: CacheOpt = None, set_keys: SetOpt = None, progress: ProgressOpt = True,
) -> None:
    """Train one model into a run folder: config, per-epoch metrics, best (on validation) and last weights."""
    from medkd.engine import fit

    overrides = training_overrides(data=data, cache_dir=cache_dir, size=size, channels=channels, model=model,
                                   weights=weights, transfer=transfer, epochs=epochs, batch_size=batch_size, lr=lr,
                                   seed=seed, threads=threads, workers=workers,
                                   accelerator=accelerator, devices=devices, num_nodes=num_nodes, tracking=tracking)
    with user_errors():
        config = load_recipe(recipe, merge(overrides, dotted_overrides(set_keys)))
        folder = fit(config.data, config.train, out, show_progress=progress)
    if is_primary_process():  # of a distributed run, the one that wrote it
        console.print(f"run folder: {folder}")


@app.command("pretrain")
def pretrain(
    recipe: RecipeArg = None,
    out: RunFolderOpt = Path("runs/pretrain"),
    method: Annotated[Optional[str], typer.Option(help="moco (MoCo v2) or simclr")] = None,
    model: Annotated[Optional[str], typer.Option(help="backbone name (create_model)")] = None,
    data: DataOpt = None, size: SizeOpt = None, channels: ChannelsOpt = None, weights: WeightsOpt = None,
    epochs: IntOpt = None, batch_size: IntOpt = None, lr: LrOpt = None, seed: SeedOpt = None,
    threads: ThreadsOpt = None, accelerator: AcceleratorOpt = None, devices: DevicesOpt = None,
    num_nodes: NodesOpt = None, cache_dir: CacheOpt = None, progress: ProgressOpt = True,
) -> None:
    """Self-supervised pretraining on the data's unlabelled images (never its test split); writes a backbone
    checkpoint for `--weights RUN/backbone.safetensors`."""
    from medkd.files import BACKBONE
    from medkd.pretrain import pretrain as run_pretraining

    with user_errors():
        config = load_recipe(recipe, {"data": data_overrides(data, cache_dir, size, channels), "pretrain": {
            "method": method, "model": model, "weights": weights, "epochs": epochs, "batch_size": batch_size,
            "lr": lr, "seed": seed, "runtime": runtime_overrides(threads=threads, accelerator=accelerator,
                                                                 devices=devices, num_nodes=num_nodes)}})
        folder = run_pretraining(config.data, config.pretrain, out, show_progress=progress)
    if is_primary_process():
        console.print(f"run folder: {folder}\nuse it with: --weights {folder / BACKBONE}")


@app.command("distill")
def distill(
    recipe: RecipeArg = None,
    out: Annotated[Path, typer.Option(help="run folder (with --sweep: a folder of runs)")] = Path("runs/distill"),
    teacher: Annotated[Optional[list[str]], typer.Option(help="teacher run folder; repeat for an ensemble")] = None,
    student: Annotated[Optional[str], typer.Option(help="student model name (create_model)")] = None,
    loss: Annotated[Optional[str], typer.Option(
        help="a registered logit loss (kd, dkd, lskd, ...; an unknown name lists them) or hint")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="softening temperature T")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="weight of the distillation term (1 - alpha: labels)")] = None,
    teacher_outputs: Annotated[Optional[str], typer.Option(help="cached, cached_views or online")] = None,
    views: Annotated[Optional[int], typer.Option(help="cached_views: augmented views per train image")] = None,
    mixup: Annotated[Optional[float], typer.Option(
        help="function matching: Beta concentration of mixup seen by teacher and student (online or cached_views)")
    ] = None,
    weight_by_class: Annotated[Optional[bool], typer.Option(
        help="weigh the distillation term by the class weights too (train.loss.class_weights)")] = None,
    hint_student_layer: Annotated[Optional[str], typer.Option(help="feature hint: student module name")] = None,
    hint_teacher_layer: Annotated[Optional[str], typer.Option(help="feature hint: teacher module name")] = None,
    sweep: Annotated[bool, typer.Option(
        help="distil from each teacher alone and from their ensemble; print a table")] = False,
    data: DataOpt = None, size: SizeOpt = None, channels: ChannelsOpt = None, weights: WeightsOpt = None,
    transfer: TransferOpt = None, epochs: IntOpt = None, batch_size: IntOpt = None, lr: LrOpt = None,
    seed: SeedOpt = None, threads: ThreadsOpt = None, workers: WorkersOpt = None, accelerator: AcceleratorOpt = None,
    devices: DevicesOpt = None, num_nodes: NodesOpt = None, tracking: TrackingOpt = None, cache_dir: CacheOpt = None,
    set_keys: SetOpt = None, progress: ProgressOpt = True,
) -> None:
    """Distil a student from trained teacher run(s) into a run folder, with teacher-student agreement."""
    from medkd.distillation import distill as run_distillation
    from medkd.distillation import sweep as run_sweep

    overrides = training_overrides(data=data, cache_dir=cache_dir, size=size, channels=channels, model=student,
                                   weights=weights, transfer=transfer, epochs=epochs, batch_size=batch_size, lr=lr,
                                   seed=seed, threads=threads, workers=workers,
                                   accelerator=accelerator, devices=devices, num_nodes=num_nodes, tracking=tracking)
    hint = {"student_layer": hint_student_layer, "teacher_layer": hint_teacher_layer}
    overrides["distill"] = {"teachers": teacher or None, "loss": loss, "temperature": temperature, "alpha": alpha,
                            "teacher_outputs": teacher_outputs, "views": views, "mixup": mixup,
                            "weight_by_class": weight_by_class,
                            "hint": hint if any(hint.values()) else None}
    with user_errors():
        config = load_recipe(recipe, merge(overrides, dotted_overrides(set_keys)))
        if config.distill is None:
            raise ConfigError("no teacher: give --teacher RUN_FOLDER (repeat for several) or a distill section")
        if sweep:
            table = run_sweep(config.data, config.train, config.distill, out, show_progress=progress)
            if not is_primary_process():
                return
            console.print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
            console.print(f"sweep table: {out / SWEEP}")
            return
        folder = run_distillation(config.data, config.train, config.distill, out, show_progress=progress)
    if is_primary_process():
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
    folds: Annotated[Optional[int], typer.Option(
        help="patient-level stratified K-fold cross-validation: every fold a study in OUT/fold{k} (held out as "
             "test, or as val where the data has its own test split), then mean ± sd over folds")] = None,
    workers: WorkersOpt = None, accelerator: AcceleratorOpt = None, devices: DevicesOpt = None,
    num_nodes: NodesOpt = None, tracking: TrackingOpt = None,
    executor: Annotated[str, typer.Option(
        help="sequential (here, one run after another) or ray (runs as Ray tasks: local, or --address)",
    )] = "sequential",
    address: Annotated[Optional[str], typer.Option(
        help="--executor ray: the cluster to join (e.g. auto, or ray://head:10001); default: a local Ray")] = None,
    cpus_per_run: Annotated[float, typer.Option(help="--executor ray: CPUs of each run (its torch threads)")] = 1,
    gpus_per_run: Annotated[float, typer.Option(help="--executor ray: GPUs of each run")] = 0,
    cache_dir: CacheOpt = None, set_keys: SetOpt = None, progress: ProgressOpt = True,
) -> None:
    """Run a whole study: every stage and seed (and fold), teachers first, finished stages skipped; print the
    comparison."""
    from medkd.runner import RayExecutor, run_study
    from medkd.study import print_summary, summarise, with_weights

    with user_errors():
        options = {"data": {"path": data, "cache_dir": cache_dir, "split": {"folds": folds}}, "seeds": seeds,
                   "train": {"runtime": runtime_overrides(workers=workers, accelerator=accelerator, devices=devices,
                                                          num_nodes=num_nodes, tracking=tracking)}}
        config = load_recipe(recipe, merge(options, dotted_overrides(set_keys)), preset=preset)
        if weights is not None:
            config = with_weights(config, weights)
        if not config.stages:
            raise ConfigError(f"{recipe} has no stages: list the models to compare under `stages:`")
        folder = out or Path("runs") / config.name
        if executor not in ("sequential", "ray"):
            raise ConfigError(f"--executor {executor}: use sequential or ray")
        ray = RayExecutor(address, cpus_per_run, gpus_per_run) if executor == "ray" else None
        runs = run_study(config, folder, stages=stage, show_progress=progress, executor=ray)
    if not is_primary_process():
        return  # the other processes of a distributed study: rank 0 writes and prints its tables
    if config.data.split.folds is not None and config.data.split.fold is None:
        console.print((folder / REPORT_MARKDOWN).read_text(), highlight=False, markup=False)
        console.print(f"cross-validated study folder: {folder} (folds_runs.csv, folds_summary.csv, "
                      f"folds_pooled.csv; each fold's study in {folder}/fold*)")
        return
    print_summary(summarise(runs), config, console)
    from medkd.report import console_answer, load_study

    console.print("\n".join(console_answer(load_study(folder))), highlight=False)
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
    efficiency: Annotated[bool, typer.Option(
        help="also measure parameters, MACs, size, CPU latency/throughput")] = True,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the result as JSON here")] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Score a run's best model on one split: metrics at argmax and at its validation-chosen threshold, with CIs."""
    from medkd.data import SPLITS
    from medkd.evaluation import EvaluationConfig, evaluate_run, print_evaluation

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
