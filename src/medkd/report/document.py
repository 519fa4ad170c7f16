"""The study report: report.md with its plots as PNG files, and report.html, one self-contained file."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone
from pathlib import Path

import markdown
import pandas as pd
import yaml

from medkd.config import Recipe
from medkd.engine import transfer_mode_class
from medkd.environment import describe_environment
from medkd.files import REPORT_HTML, REPORT_MARKDOWN
from medkd.models import IMAGENET_TAG
from medkd.report.answer import answer
from medkd.report.collect import StudyResults, load_study, study_recipe
from medkd.report.figures import (
    confusion_matrices,
    efficiency_tradeoff,
    label_efficiency_curves,
    reliability_diagram,
    roc_curves,
    training_curves,
)
from medkd.report.paired import paired_tests, students_and_teachers
from medkd.report.tables import markdown_table, mean_sd
from medkd.study import schema, within_budget

FIGURE_FOLDER = "report_files"
FIGURE_DPI = 110
TEST_METRICS = [("auc", "AUC"), ("average_precision", "AP"), ("accuracy", "accuracy"),
                ("balanced_accuracy", "bal. accuracy"), ("precision", "precision"), ("recall", "sensitivity"),
                ("specificity", "specificity"), ("f1", "F1"), ("ece", "ECE")]
# Validation: what the recommendation and the thresholds were chosen on, with the tie-breaking scoring rules.
VAL_METRICS = [*(metric for metric in TEST_METRICS if metric[0] != "ece"), ("log_loss", "log-loss"), ("brier", "Brier")]
ARGMAX_METRICS = [("accuracy@argmax", "accuracy"), ("recall@argmax", "sensitivity"),
                  ("specificity@argmax", "specificity")]
EXPORT_COLUMNS = [(schema.engine_latency("onnx_fp32"), "ONNX fp32 ms", 2),
                  (schema.engine_latency("onnx_int8"), "ONNX int8 ms", 2), (schema.INT8_TEST_AUC, "int8 test AUC", 3)]
INTERVAL_METRICS = [("auc", "AUC"), ("accuracy", "accuracy"), ("recall", "sensitivity"), ("specificity", "specificity")]
HTML_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 75em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
blockquote { border-left: 6px solid #c62828; background: #fdecea; margin: 1em 0; padding: 0.5em 1em; }
img { max-width: 100%; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""


def untrained_transfer_stages(recipe: Recipe) -> list[str]:
    """Stages whose transfer mode expects pretrained weights (e.g. linear, finetune) but start from none."""
    stages = []
    for stage in (s for s in recipe.stages if s.pretrain is None and s.derive is None):
        settings = recipe.stage_train(stage, 0)
        if transfer_mode_class(settings.transfer.name).expects_pretrained and settings.weights == "none":
            stages.append(stage.name)
    return stages


def transfer_modes(recipe: Recipe, names: list[str]) -> list[str]:
    """The transfer modes of the named stages, sorted."""
    return sorted({recipe.stage_train(stage, 0).transfer.name for stage in recipe.stages if stage.name in names})


def header(results: StudyResults) -> list[str]:
    recipe, runs = results.recipe, results.runs
    first = results.evaluation(results.stages[0], results.seeds[0])
    lines = [f"# {recipe.name}: study report", "",
             f"Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from `{results.folder}`: "
             f"{len(results.stages)} stages x {len(results.seeds)} seed(s) = {len(runs)} runs, "
             f"classes {', '.join(results.classes)}, test split of {first.images} images.", ""]
    if results.missing:
        missing = ", ".join(f"{stage} seed {seed}" for stage, seed in results.missing)
        lines += [f"> **Unfinished study: {len(runs)} of {len(runs) + len(results.missing)} runs evaluated.** "
                  f"Not evaluated yet: {missing}. Means, sds and paired tests use the seeds each stage has; "
                  "`medkd run` with the same recipe and study folder finishes it.", ""]
    stages = untrained_transfer_stages(recipe)
    if stages:
        lines += [f"> **Warning: no pretrained weights.** {', '.join(stages)} are transfer-learning stages "
                  f"(`transfer: {', '.join(transfer_modes(recipe, stages))}`) but started from random weights "
                  "(`weights: none`, e.g. "
                  "`--weights none` where ImageNet weights cannot be fetched). Their figures are those of "
                  "models trained from scratch, not of transfer learning; a linear probe on random features "
                  "is expected to be poor.", ""]
    return lines


def starting_weights(results: StudyResults, stage: str) -> str:
    """How a stage's model started: a registered weight set such as ImageNet's (and where it came from), random,
    a file, or another stage's result."""
    config = next(s for s in results.recipe.stages if s.name == stage)
    if config.weights_from:
        return f"stage {config.weights_from}"
    weights = results.recipe.stage_train(config, 0).weights
    if weights == "none":
        return "random"
    pretrained = results.card(stage, results.seeds_of(stage)[0]).pretrained
    if pretrained is None:
        return f"file {Path(weights).name}"
    return f"{'ImageNet' if weights == IMAGENET_TAG else weights} ({pretrained.source})"


def stage_table(results: StudyResults) -> list[str]:
    """What each stage is: model, how it trains, where its weights start, its teachers."""
    rows = {}
    for stage in results.stages:
        config = next(s for s in results.recipe.stages if s.name == stage)
        settings = results.recipe.stage_train(config, 0)
        teachers = ", ".join(config.distill.teachers if config.distill else []) or "-"
        rows[stage] = {"model": settings.model, "transfer": settings.transfer.name,
                       "starting weights": starting_weights(results, stage), "teachers": teachers}
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("stage")
    return ["## Stages", "", table.to_markdown(disable_numparse=True), ""]


def budget(results: StudyResults) -> list[str]:
    """The selection budget and how many stages fit it (the answer says what was chosen within it and why)."""
    selection = results.recipe.selection
    each = [f"at most {selection.max_parameters:,} parameters" if selection.max_parameters else "",
            f"at most {selection.max_latency_ms} ms per image on CPU" if selection.max_latency_ms else ""]
    limits = " and ".join(limit for limit in each if limit)
    if not limits:
        return []
    fits = within_budget(results.summary, selection)
    return [f"Deployment budget: {limits}; {len(fits)} of {len(results.summary)} stages fit it, and only those "
            "could be recommended." if len(fits) else f"Deployment budget: {limits}; **no stage fits it**, so it "
            "was ignored.", ""]


def comparison(results: StudyResults) -> list[str]:
    summary, binary = results.summary, len(results.classes) == 2
    rule = results.recipe.train.threshold
    decision = (f"at each model's decision threshold, chosen on validation ({rule.rule})" if binary
                else "at argmax (multi-class)")
    test = pd.DataFrame({title: mean_sd(summary, schema.score("test", name)) for name, title in TEST_METRICS})
    lines = ["## Comparison on the test split", "",
             f"Mean ± sd over {len(results.seeds)} seed(s), {decision}. Nothing here was chosen on test.", "",
             markdown_table(test), ""]
    if binary:
        argmax = pd.DataFrame({title: mean_sd(summary, schema.score("test", name)) for name, title in ARGMAX_METRICS})
        lines += ["At probability 0.5 instead (argmax):", "", markdown_table(argmax), ""]
    else:
        recall = pd.DataFrame({name: mean_sd(summary, schema.per_class_recall("test", name))
                               for name in results.classes})
        lines += ["Recall of each class (the share of its test images called that class), mean ± sd; the macro "
                  "means above can hide a class a model misses:", "", markdown_table(recall), ""]
    seed = results.seeds[0]
    intervals = {}
    for stage in results.stages:
        evaluation = results.evaluation(stage, seed)
        scores = evaluation.at_threshold or evaluation.at_argmax
        intervals[stage] = {title: f"{scores[name]:.3f}" + (
            " ({:.3f}-{:.3f})".format(*evaluation.intervals[name]) if evaluation.intervals else "")
            for name, title in INTERVAL_METRICS}
    confidence = results.evaluation(results.stages[0], seed).confidence
    resampled = results.evaluation(results.stages[0], seed).resampled or "images"
    lines += [f"Seed {seed} alone, with {confidence:.0%} bootstrap confidence intervals "
              f"({results.recipe.evaluation.bootstrap_resamples} resamples of the test split's {resampled}):", "",
              markdown_table(pd.DataFrame(intervals).T), ""]
    cost = pd.DataFrame({
        "parameters": summary[schema.mean(schema.PARAMETERS)].map("{:,.0f}".format),
        "MACs (M)": (summary[schema.mean(schema.MACS)] / 1e6).map("{:,.1f}".format),
        "size (MB)": summary[schema.mean(schema.SIZE_MB)].map("{:.2f}".format),
        "latency ms (median)": mean_sd(summary, schema.LATENCY_MS, 2),
        "latency ms (p95)": mean_sd(summary, "latency_p95_ms", 2),
        "images/s (batch 32)": summary[schema.mean(schema.THROUGHPUT)].map("{:,.0f}".format),
        "training s": mean_sd(summary, schema.TRAIN_SECONDS, 0)})
    for column, title, digits in EXPORT_COLUMNS:  # stages the recipe exported (its `export` section)
        if schema.mean(column) in summary:
            cost[title] = mean_sd(summary, column, digits).where(summary[schema.mean(column)].notna(), "-")
    exported = ("; ONNX columns: the exported models (`export` in the recipe, as `medkd export --int8`), batch 1, "
                "uint8 image in, probabilities out, with int8's test AUC"
                if schema.mean(EXPORT_COLUMNS[0][0]) in summary else "")
    lines += [f"Cost {cost_machines(results)} (see *How this study was run*), even where it trained on a GPU; "
              f"PyTorch fp32 latency; training seconds: sum of epoch times{exported}:",
              "", markdown_table(cost), "",
              "Validation scores (what the recommendation and the thresholds were chosen on):", "",
              markdown_table(pd.DataFrame({title: mean_sd(summary, schema.score("val", name))
                                           for name, title in VAL_METRICS
                                           if schema.mean(schema.score("val", name)) in summary})), ""]
    return lines


def cost_machines(results: StudyResults) -> str:
    """Where the CPU cost was measured: one thread count, or the runs measured with another (another machine)."""
    threads: dict[int, list[str]] = {}
    for stage, seed in zip(results.runs["stage"], results.runs["seed"]):
        cost = results.evaluation(stage, seed).efficiency
        assert cost is not None  # a study measures every test evaluation's cost
        threads.setdefault(cost["threads"], []).append(f"{stage} seed {seed}")
    (usual, _), *others = sorted(threads.items(), key=lambda item: -len(item[1]))
    if not others:
        return f"on the CPU of the machine that ran the study ({usual} torch threads)"
    return (f"on the CPUs of more than one machine, whose latencies do not compare: {usual} torch threads except "
            + "; ".join(f"{count} in {', '.join(runs)}" for count, runs in others))


def label_efficiency(results: StudyResults) -> list[str]:
    """Test AUC and accuracy of each method at each share of labelled train patients (when the study has them)."""
    methods = results.label_efficiency
    if not methods:
        return []
    summary = results.summary
    auc, accuracy = mean_sd(summary, schema.score("test", "auc")), mean_sd(summary, schema.score("test", "accuracy"))
    fractions = sorted({fraction for stages in methods.values() for fraction in stages})
    cells = {}
    for method, stages in methods.items():
        cells[method] = {f"{fraction:.0%} labels": "" for fraction in fractions}
        for fraction, stage in stages.items():
            if stage in summary.index:
                cells[method][f"{fraction:.0%} labels"] = f"{auc[stage]} / {accuracy[stage]}"
    return ["## Label efficiency", "",
            f"Test AUC / accuracy (at the validation threshold), mean ± sd over {len(results.seeds)} seed(s), for "
            "each method trained on a share of the train patients' labels (subsampled by patient; validation and "
            "test unchanged).", "", markdown_table(pd.DataFrame(cells).T, "method"), ""]


def data_summary(results: StudyResults) -> list[str]:
    check = results.data_check
    if check is None:
        return ["## Data", "", "No data check was recorded for this study.", ""]
    splits = list(check["split_sizes"])
    table = pd.DataFrame({split: {"images": check["split_sizes"][split],
                                  **{f"class {name}": check["class_counts"][split].get(name, 0)
                                     for name in check["classes"]},
                                  "patients": check["patients"].get(split, "")} for split in splits})
    lines = ["## Data", "", f"From `{check['origin']}` (`medkd data check` on the same settings). Imbalance ratio "
             f"(largest / smallest class in train): {check['imbalance_ratio']:.2f}. Splits carved by patient: "
             f"{', '.join(check['carved']) or 'none'}. Bad files skipped: {len(check['bad_files'])}. "
             f"Identical images across splits: {len(check['duplicates_across_splits'])}.", "",
             markdown_table(table.astype(str), ""), ""]
    for title, items in (("Leaks", check["leaks"]), ("Warnings", check["warnings"]), ("Notes", check["notes"])):
        if items:
            lines += [f"{title}:", "", *[f"- {item}" for item in items], ""]
    return lines


def provenance(results: StudyResults) -> list[str]:
    sessions = results.sessions
    lines = ["## How this study was run", ""]
    if sessions:
        environment = sessions[-1]["environment"]
        lines += ["| started (UTC) | wall time | runs trained | ended | command |", "| --- | ---: | ---: | --- | --- |",
                  *[f"| {s['started']} | {s['wall_seconds'] / 60:.1f} min | {s['jobs_run']} | "
                    f"{'yes' if s.get('ended', True) else 'no (stopped; time up to its last run)'} | `{s['command']}` |"
                    for s in sessions], ""]
        machine = "Machine of the last session"
        unrecorded = len(results.runs) - sum(s["jobs_run"] for s in sessions)
        if unrecorded > 0:  # at least: jobs_run also counts pretraining runs
            lines += [f"At least {unrecorded} of the {len(results.runs)} evaluated runs were trained by sessions not "
                      "recorded here (by a medkd that did not record sessions, or in another folder): their command, "
                      "time and machine are not in this table.", ""]
    else:
        environment = describe_environment()
        machine = ("No session of this study was recorded (a folder from a medkd that recorded sessions only when "
                   "they ended), so its command, wall time and machine are unknown. This report was written on")
    lines += [f"{machine}: {environment['cpu']}, {environment['cpu_cores']} logical cores, "
              f"{environment['torch_threads']} torch threads{native_bf16(environment)}, "
              f"GPU: {environment['gpu'] or 'none'}; {environment['os']}, Python {environment['python']}.", "",
              "Packages: " + ", ".join(f"{name} {version}" for name, version in environment["packages"].items()),
              "", "The resolved recipe (presets and command-line options applied):", "", "```yaml",
              yaml.safe_dump(results.recipe.model_dump(mode="json"), sort_keys=False).rstrip(), "```", ""]
    return lines


def figures(results: StudyResults, folder: Path) -> list[str]:
    seed = results.seeds[0]
    plots = [("tradeoff", efficiency_tradeoff(results), "Accuracy against cost"),
             ("roc", roc_curves(results, seed), "ROC curves"),
             ("confusion", confusion_matrices(results, seed), "Confusion matrices"),
             ("curves", training_curves(results, seed), "Training curves"),
             ("reliability", reliability_diagram(results, seed), "Calibration")]
    if results.label_efficiency:
        plots.insert(1, ("labels", label_efficiency_curves(results), "Label efficiency"))
    folder.mkdir(exist_ok=True)
    lines = ["## Plots", ""]
    for name, figure, title in plots:
        figure.savefig(folder / f"{name}.png", dpi=FIGURE_DPI)
        lines += [f"### {title}", "", f"![{title}]({folder.name}/{name}.png)", ""]
    return lines + calibration_table(results, seed)


def native_bf16(environment: dict) -> str:
    """How the CPU computes bf16 (recorded since medkd recorded it): precision auto trains in bf16 only natively."""
    if "cpu_native_bf16" not in environment:
        return ""
    return ", native bf16" if environment["cpu_native_bf16"] else ", no native bf16 (fp32 under precision auto)"


def calibration_table(results: StudyResults, seed: int) -> list[str]:
    """Each stage's temperature (fitted on validation) and its test ECE with and without it, for one seed."""
    rows = {}
    for stage in results.stages:
        calibration = results.evaluation(stage, seed).calibration
        if calibration:  # runs evaluated before medkd calibrated have none
            ood = results.evaluation(stage, seed).ood
            rows[stage] = {"temperature": f"{calibration['temperature']:.3f}",
                           "test ECE, raw softmax": f"{calibration['ece_uncalibrated']:.3f}",
                           "test ECE, calibrated": f"{calibration['ece']:.3f}",
                           "test images the guard flags": (f"{ood['flagged']} ({ood['flagged_share']:.1%})" if ood
                                                           else "no guard")}
    if not rows:
        return []
    return [f"Temperature scaling (one temperature per run, fitted on validation; seed {seed}). The probabilities "
            "everywhere else in this report, and in predict, serve and the export, are the calibrated ones. The "
            "out-of-distribution guard's threshold passes a set share of validation images; the last column is how "
            "many official test X-rays it would flag:", "",
            markdown_table(pd.DataFrame(rows).T), ""]


def inline_images(html: str, folder: Path) -> str:
    """Replace <img src="FILE.png"> by data URIs, so the HTML file stands alone."""
    def embed(match: re.Match) -> str:
        data = base64.b64encode((folder / match.group(1)).read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'
    return re.sub(r'src="([^"]+\.png)"', embed, html)


def write_report(folder: str | Path) -> tuple[Path, Path]:
    """Write STUDY/report.md (+ report_files/*.png) and the self-contained STUDY/report.html; for a
    cross-validated study, its view across folds (report.folds)."""
    split = study_recipe(folder).data.split
    if split.folds is not None and split.fold is None:
        from medkd.report.folds import write_cross_validation_report

        return write_cross_validation_report(folder, split.folds)
    results = load_study(folder)
    lines = [*header(results), *answer(results), *budget(results), *stage_table(results), *comparison(results),
             *label_efficiency(results),
             *paired_tests(results), *students_and_teachers(results),
             *figures(results, results.folder / FIGURE_FOLDER), *data_summary(results), *provenance(results)]
    text = "\n".join(lines)
    markdown_path = results.folder / REPORT_MARKDOWN
    markdown_path.write_text(text)
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    html = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{results.recipe.name}: study report</title>"
            f"<style>{HTML_STYLE}</style></head><body>\n{inline_images(body, results.folder)}\n</body></html>\n")
    html_path = results.folder / REPORT_HTML
    html_path.write_text(html)
    return markdown_path, html_path
