"""The study report: every stage's numbers, paired tests, plots in one HTML file, multi-class studies."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from conftest import class_image, tiny_recipe
from medkd.cli import app
from medkd.config import load_recipe
from medkd.config.stages import StageConfig
from medkd.report.collect import load_study
from medkd.report.document import untrained_transfer_stages
from medkd.study import matched_controls, with_weights


def check_report(out: Path, summary: pd.DataFrame) -> None:
    """The study's report: every stage's numbers, the KD-vs-control tests, five plots inside one HTML file."""
    markdown = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    study = load_study(out)
    sections = re.findall(r"^## (.+)$", markdown, re.MULTILINE)
    assert sections[0] == "The answer" and "Recommended model" not in sections
    answer = markdown.split("## The answer")[1].split("\n## ")[0]
    assert f"**Deploy {study.recommended}.**" in answer and f"Why {study.recommended}: " in answer
    assert re.search(r"^\| recommended +\| " + study.recommended + r" +\|", answer, re.MULTILINE)
    best = study.recommendation.best_overall  # the best on validation at any cost, and what the budget costs
    assert (f"What the budget costs: {study.recommended} has " in answer) == (best != study.recommended)
    if study.recommended in ("student_kd", "control"):  # the pair: KD against its control, per seed
        assert "student_kd (KD) vs control (no teacher), paired on the test images: seed 0: ΔAUC" in answer
        assert "Its teachers' ensemble (their test probabilities softened" in answer
    for stage, row in summary.iterrows():
        auc = f"{row['test_auc_mean']:.3f} ± {row['test_auc_std']:.3f}"
        assert re.search(rf"^\| {stage} +\| +{auc} \|", markdown, re.MULTILINE), f"{stage}'s test AUC {auc}"
    assert "**student_kd** vs **control**" in markdown and "DeLong p" in markdown and "McNemar p" in markdown
    assert re.search(r"^\| student_kd +\| compact_cnn +\| scratch +\| random +\| teacher +\|$", markdown, re.MULTILINE)
    assert html.count('src="data:image/png;base64,') == 5 and 'src="report_files' not in html
    against = markdown.split(f"### The recommended model ({study.recommended}) against each other stage")[1]
    header = [cell.strip() for cell in against.split("\n\n")[1].splitlines()[0].strip("|").split("|")]
    assert header == ["other stage", "AUC recommended", "AUC other", "ΔAUC", "DeLong p", "acc. recommended",
                      "acc. other", "Δacc.", "McNemar p"]  # named by role, whatever the stages are called
    for plot in ("tradeoff", "roc", "confusion", "curves", "reliability"):
        assert (out / "report_files" / f"{plot}.png").stat().st_size > 10_000
    killed, resumed = study.sessions  # the killed session left its record up to its last finished run
    assert not killed["ended"] and killed["jobs_run"] <= 1 and resumed["ended"] and resumed["jobs_run"] == 7
    assert "Unfinished study" not in markdown
    assert study.sessions[0]["environment"]["packages"]["torch"] == torch.__version__.split("+")[0]
    assert "Warning: no pretrained weights" not in markdown  # every stage here is meant to train from scratch
    calibration = markdown.split("Temperature scaling (one temperature per run")[1].split("\n## ")[0]
    for stage in summary.index:  # each run's temperature, and its test ECE before and after it
        recorded = study.evaluation(stage, study.seeds[0]).calibration
        ood = study.evaluation(stage, study.seeds[0]).ood  # and the share of test images its guard flags
        assert re.search(rf"^\| {stage} +\| +{recorded['temperature']:.3f} \| +{recorded['ece_uncalibrated']:.3f} \| +"
                         rf"{recorded['ece']:.3f} \| +{ood['flagged']} \({100 * ood['flagged_share']:.1f}%\) \|$",
                         calibration, re.MULTILINE), stage


def test_matched_controls_and_the_missing_weights_warning(tmp_path):
    recipe = load_recipe(tiny_recipe(tmp_path))
    assert matched_controls(recipe) == {"student_kd": ["control"]}
    control = next(stage for stage in recipe.stages if stage.name == "control")
    smoothed = StageConfig(name="control_ls", train={**control.train, "loss": {"label_smoothing": 0.1}})
    other_epochs = StageConfig(name="control_ls_longer", train={**control.train, "epochs": 9,
                                                                 "loss": {"label_smoothing": 0.1}})
    with_smoothing = recipe.model_copy(update={"stages": [smoothed, *recipe.stages, other_epochs]})
    assert matched_controls(with_smoothing) == {"student_kd": ["control", "control_ls"]}  # no KD first
    assert untrained_transfer_stages(recipe) == []
    finetuned = recipe.model_copy(update={"stages": [*recipe.stages, StageConfig(
        name="resnet_finetune", train={"model": "resnet18", "transfer": "finetune", "weights": "imagenet"})]})
    assert untrained_transfer_stages(finetuned) == []
    assert untrained_transfer_stages(with_weights(finetuned, "none")) == ["resnet_finetune"]


def test_multiclass_imbalanced_study_and_its_report(tmp_path):
    """Three imbalanced classes from NumPy arrays: the study runs, and the report adapts (argmax decisions,
    micro-average ROC, McNemar without DeLong, 3 x 3 confusion matrices)."""
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    per_class = {"train": (40, 16, 8), "test": (10, 6, 4)}  # imbalanced, as the 3-class Kermany task
    seed = 0
    for split, counts in per_class.items():
        labels = np.repeat(np.arange(3), counts)
        images = []
        for label in labels:
            seed += 1
            images.append(class_image(int(label), seed, size=32))
        np.save(arrays / f"X_{split}.npy", np.stack(images))
        np.save(arrays / f"y_{split}.npy", labels)
    reordered = tmp_path / "reordered"  # the same images, the test split in reverse order: nothing to pair with
    reordered.mkdir()
    for name in ("X_train", "y_train"):
        np.save(reordered / f"{name}.npy", np.load(arrays / f"{name}.npy"))
    for name in ("X_test", "y_test"):
        np.save(reordered / f"{name}.npy", np.load(arrays / f"{name}.npy")[::-1].copy())
    recipe = {
        "name": "three",
        "data": {"path": str(arrays), "source": "numpy", "cache_dir": str(tmp_path / "cache"),
                 "preprocessing": {"size": 32, "channels": 1}, "split": {"min_val_size": 1, "val_fraction": 0.25}},
        "train": {"model": "compact_cnn", "model_args": {"width": 8}, "epochs": 2, "batch_size": 16,
                  "precision": "32", "loss": {"class_weights": "balanced"}},
        "evaluation": {"bootstrap_resamples": 20},
        "selection": {"metric": "balanced_accuracy", "max_parameters": 10_000_000},  # a budget every stage fits
        "stages": [{"name": "teacher", "train": {"model_args": {"width": 16}}},
                   {"name": "student_kd", "distill": {"teachers": ["teacher"]}},
                   {"name": "control"},
                   {"name": "control_reordered", "data": {"path": str(reordered)}}],
        "comparisons": [["control", "control_reordered"]],
    }
    path = tmp_path / "three.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "study"
    # one loader process: augmented batches and cached teacher logits come through a worker
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--no-progress", "--workers", "1"])
    assert result.exit_code == 0, result.output
    used = yaml.safe_load((out / "student_kd" / "seed0" / "config.yaml").read_text())
    assert used["train"]["runtime"]["num_workers"] == 1
    study = load_study(out)
    assert len(study.classes) == 3
    assert np.array(study.evaluation("control", 0).at_argmax["confusion_matrix"]).shape == (3, 3)
    assert study.evaluation("control", 0).at_threshold is None  # no threshold for multi-class decisions
    markdown = (out / "report.md").read_text()
    assert "At probability 0.5" not in markdown and "DeLong p" not in markdown and "McNemar p" in markdown
    assert "**student_kd** vs **control**" in markdown
    # a paired test needs the same test images in the same order: asked for, it is refused with the reason
    assert ("**control** vs **control_reordered**: no paired test: they share no finished seed scored on the same "
            "test images") in markdown
    against = markdown.split(f"### The recommended model ({study.recommended}) against each other stage")[1]
    assert "control_reordered" not in against.split("\n## ")[0] or study.recommended == "control_reordered"
    recalls = {stage: study.evaluation(stage, 0).at_argmax["per_class"]["recall"] for stage in study.stages}
    for stage, recall in recalls.items():  # each class's test recall, as the run's evaluation recorded it
        cells = r" \| +".join(f"{value:.3f}" for value in recall)
        assert re.search(rf"^\| {stage} +\| +{cells} \|$", markdown, re.MULTILINE), stage
    paired = markdown.split("**student_kd** vs **control**")[1].split("\n\n")[1]  # which class KD moved
    header, _, row = paired.splitlines()[:3]
    assert [c.strip() for c in header.split("|")][-4:-1] == [f"Δrecall {c}" for c in study.classes]
    deltas = [float(c) for c in row.split("|")[-4:-1]]
    assert np.allclose(deltas, np.subtract(recalls["student_kd"], recalls["control"]), atol=6e-5)
    taught = markdown.split("### Students and what they were taught")[1].split("\n## ")[0]
    softened = study.uncalibrated("teacher", 0) ** (1 / 4)  # softmax(log p / T) at the recipe's default T = 4
    softened /= softened.sum(axis=1, keepdims=True)
    teacher_auc = roc_auc_score(study.predictions("teacher", 0)[0], softened, multi_class="ovr", average="macro")
    student_auc = study.evaluation("student_kd", 0).at_argmax["auc"]
    own_auc = study.evaluation("teacher", 0).at_argmax["auc"]  # the teacher's own calibrated test AUC
    assert re.search(rf"^\| student_kd +\| +teacher \| +4\.0 \| +1 \| +{own_auc:.4f} \| +{teacher_auc:.4f} \| "
                     rf"+{student_auc:.4f} \| +{student_auc - teacher_auc:+.4f} ± 0.0000 \|$", taught,
                     re.MULTILINE), taught
    assert (out / "report.html").read_text().count('src="data:image/png;base64,') == 5
    assert "Deployment budget: at most 10,000,000 parameters; 4 of 4 stages fit it" in markdown
    best = load_study(out).recommendation.best_overall
    assert (f"against {best}, the best on validation at any cost" in markdown) == (best != load_study(out).recommended)
    best = study.summary["val_balanced_accuracy_mean"]
    assert study.recommended in best[best >= best.max() - 0.01].index

    again = CliRunner().invoke(app, ["report", str(out)])  # the report alone, from the folder
    assert again.exit_code == 0 and "report.html" in again.output
    assert CliRunner().invoke(app, ["report", str(tmp_path)]).exit_code == 2  # not a study folder
