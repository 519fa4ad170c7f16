"""`medkd calibrate`, adapt and site-study: a trained model at a new site. Each writes new folders; a trained run
is never changed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from medkd.cli.common import ProgressOpt, app, console, user_errors


@app.command("calibrate")
def calibrate(
    run: Annotated[Path, typer.Argument(help="trained run folder")],
    data: Annotated[str, typer.Option(help="the site's labelled images: class folders as in training (every image "
                                           "is used, whatever its split)")],
    out: Annotated[Path, typer.Option(help="the calibrated run folder to write (the original is kept)")],
    progress: ProgressOpt = True,
) -> None:
    """Re-fit the temperature and the decision threshold (the run's own rule) on a site's labelled images."""
    from medkd.data import DataConfig
    from medkd.models import RunCard
    from medkd.site import calibrate_run

    with user_errors():
        preprocessing = RunCard.read(run).preprocessing
        folder, update = calibrate_run(run, DataConfig(path=data, preprocessing=preprocessing), out,
                                       show_progress=progress)
    record = update["calibration"]
    console.print(f"{folder}: calibrated on {record['site']['images']} site images {record['site']['class_counts']}")
    console.print(f"  temperature "
                  f"{update['validation_calibration'] and update['validation_calibration']['temperature']}"
                  f" (validation) -> {record['temperature']:.3f} (site); site ECE {record['site_ece_before']:.4f} -> "
                  f"{record['site_ece_after']:.4f}")
    if "threshold" in update:
        console.print(f"  threshold {update['validation_threshold']} (validation) -> {update['threshold']:.4f} (site)")


@app.command("adapt")
def adapt(
    run: Annotated[Path, typer.Argument(help="trained run folder")],
    paths: Annotated[list[Path], typer.Argument(help="the site's unlabelled images (files or folders)")],
    out: Annotated[Path, typer.Option(help="the adapted run folder to write (the original is kept)")],
    method: Annotated[str, typer.Option(
        help="a derived-run method that learns from a site's unlabelled images: adabn (batch-norm statistics of "
             "the site's images), prior-shift (the site's class mix estimated by EM, probabilities re-weighted)")
    ] = "adabn",
    data: Annotated[Optional[str], typer.Option(help="the run's training data, where it is not where the run "
                                                     "found it (prior-shift reads its class mix)")] = None,
    progress: ProgressOpt = True,
) -> None:
    """Adapt a model to a site's unlabelled images: AdaBN, or a prior-shift correction (Saerens et al., 2002). Either
    may not help, e.g. AdaBN when the site's class mix differs, the prior shift when the images themselves differ:
    measure it (medkd site-study) before relying on it."""
    from medkd.config import ConfigError
    from medkd.data import prepare, run_data_config
    from medkd.derive import DERIVED_RUNS, DeriveInputs, derive_run
    from medkd.models import RunCard
    from medkd.site import site_images

    with user_errors():
        site_methods = sorted(name for name, cls in DERIVED_RUNS.items() if cls.needs_site_images)
        if method not in site_methods:
            raise ConfigError(f"--method {method}: use one of {', '.join(site_methods)}")
        images, problems = site_images(paths, RunCard.read(run).preprocessing)
        inputs = DeriveInputs(lambda: prepare(run_data_config(run, data), show_progress=progress), images,
                              tuple(str(Path(p).resolve()) for p in paths), len(problems))
        folder, record = derive_run(run, out, method, inputs)
    unreadable = f" ({record['unreadable']} unreadable files skipped)" if record["unreadable"] else ""
    if method == "adabn":
        console.print(f"{folder}: {record['layers']} batch-norm layers adapted on {record['images']} images"
                      f"{unreadable}")
        return
    mix = ", ".join(f"{name} {train:.3f} -> {site:.3f}" for name, train, site in
                    zip(record["classes"], record["train_prior"], record["site_prior"]))
    console.print(f"{folder}: class mix re-estimated on {record['images']} images{unreadable}: {mix} (training -> "
                  f"site, EM {record['em_iterations']} iterations); the validation threshold is kept")
    if not record["em_converged"]:
        console.print("  EM did not converge: the estimate is its last iterate")


@app.command("site-study")
def site_study(
    study: Annotated[Path, typer.Argument(help="study folder written by `medkd run`")],
    stage: Annotated[Optional[list[str]], typer.Option(
        help="stage to include (repeatable; default: every stage)")] = None,
    splits: Annotated[int, typer.Option(help="seeded site splits of the test split, each applied to every run")] = 3,
    calibration_fraction: Annotated[float, typer.Option(help="share of the test patients that calibrate")] = 0.25,
    progress: ProgressOpt = True,
) -> None:
    """The site-calibration protocol (apart from the main results): part of the official test split calibrates,
    the rest evaluates every variant; writes STUDY/site_study/site_study.{csv,md}."""
    from medkd.config import ConfigError, load_recipe
    from medkd.files import RECIPE, SITE_STUDY, SITE_STUDY_MARKDOWN
    from medkd.site import site_study as run_site_study
    from medkd.study import finished_runs, run_folder

    with user_errors():
        recipe = load_recipe(study / RECIPE)
        finished, _ = finished_runs(recipe, study)
        names = stage or list(dict.fromkeys(finished["stage"]))
        unknown = sorted(set(names) - set(finished["stage"]))
        if unknown:
            raise ConfigError(f"{', '.join(unknown)}: no finished run in {study} (finished stages: "
                              f"{', '.join(dict.fromkeys(finished['stage']))})")
        runs = {name: [run_folder(study, name, int(seed)) for seed in finished.loc[finished["stage"] == name, "seed"]]
                for name in names}
        run_site_study(runs, study / SITE_STUDY, splits=splits, calibration_fraction=calibration_fraction,
                       show_progress=progress)
    console.print((study / SITE_STUDY / SITE_STUDY_MARKDOWN).read_text())
