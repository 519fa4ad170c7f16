"""`medkd run`: stages in dependency order, several seeds, finished stages skipped after a kill, one table."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from lightning.pytorch.accelerators import CUDAAccelerator
from test_report import check_report
from typer.testing import CliRunner

from conftest import tiny_recipe
from medkd.cli import app
from medkd.config import ConfigError, load_recipe
from medkd.config.stages import SelectionConfig, StageConfig
from medkd.files import DATA_LOCATION
from medkd.runner import run_study
from medkd.study import recommend, stage_order


def test_teachers_come_first_and_unknown_or_cyclic_teachers_are_refused():
    stages = [StageConfig(name="s", distill={"teachers": ["t"]}), StageConfig(name="t")]
    assert [s.name for s in stage_order(stages)] == ["t", "s"]
    with pytest.raises(ConfigError, match="not stages"):
        stage_order([StageConfig(name="s", distill={"teachers": ["nobody"]})])
    with pytest.raises(ConfigError, match="cycle"):
        stage_order([StageConfig(name="a", distill={"teachers": ["b"]}),
                     StageConfig(name="b", distill={"teachers": ["a"]})])


def test_recommendation_uses_validation_and_speed_only():
    summary = pd.DataFrame({"val_auc_mean": [0.95, 0.945, 0.90], "latency_ms_mean": [30.0, 2.0, 0.5],
                            "val_log_loss_mean": [0.3, 0.4, 0.2], "test_auc_mean": [0.80, 0.70, 0.99]},
                           index=["big", "small", "tiny"])
    summary["parameters_mean"] = [25e6, 3e6, 0.1e6]
    pick = lambda **settings: recommend(summary, SelectionConfig(metric="auc", **settings)).stage  # noqa: E731
    assert pick() == "small"  # tiny: fastest and best on test, 0.05 behind on val
    # a deployment budget: only what fits is considered (then tiny, the one left), and none fitting is ignored
    assert pick(max_parameters=1_000_000) == "tiny"
    assert pick(max_latency_ms=40, tolerance=0.0) == "big"
    assert pick(max_latency_ms=20, tolerance=0.0) == "small"
    choice = recommend(summary, SelectionConfig(metric="auc", max_parameters=10))
    assert choice.stage == "small" and choice.budget_ignored and choice.best_overall == "big"
    assert "ignored" in choice.reason(summary, SelectionConfig(metric="auc", max_parameters=10))


def test_equal_cost_models_tied_on_validation_auc_fall_to_validation_log_loss():
    """A distilled student and its control: the same network (latency noise apart), validation AUC saturated; the
    proper scoring rule decides, and the reason says so. Faster by more than the tolerance still wins outright."""
    summary = pd.DataFrame({"val_auc_mean": [0.996, 0.997, 0.995], "latency_ms_mean": [1.2, 1.1, 15.0],
                            "val_log_loss_mean": [0.050, 0.070, 0.040], "val_brier_mean": [0.030, 0.020, 0.010],
                            "parameters_mean": [1e5, 1e5, 3e6]}, index=["student_kd", "student_no_kd", "teacher"])
    selection = SelectionConfig(metric="auc", max_parameters=500_000)
    choice = recommend(summary, selection)
    assert choice.stage == "student_kd" and choice.equally_fast == ["student_kd", "student_no_kd"]
    reason = choice.reason(summary, selection)
    assert "within the budget: student_kd, student_no_kd (2 of 3)" in reason
    assert "the lowest validation log-loss of those: student_kd 0.0500, student_no_kd 0.0700." in reason
    assert recommend(summary, selection.model_copy(update={"tie_breaker": "brier"})).stage == "student_no_kd"
    assert recommend(summary, selection.model_copy(update={"latency_tolerance": 0.05})).stage == "student_no_kd"
    # the same network timed at 2x (a shared CPU): still equally fast, because its MACs and parameters are the same
    noisy = summary.assign(latency_ms_mean=[2.2, 1.1, 15.0], macs_mean=[5e6, 5e6, 4e8])
    assert recommend(noisy, selection.model_copy(update={"latency_tolerance": 0.05})).stage == "student_kd"
    assert recommend(noisy.assign(macs_mean=[6e6, 5e6, 4e8]), selection).stage == "student_no_kd"
    assert recommend(summary, SelectionConfig(metric="auc")).best_overall == "student_no_kd"
    older = summary.assign(val_log_loss_mean=float("nan"))  # runs evaluated before log-loss existed: the fastest
    assert recommend(older, selection).stage == "student_no_kd"
    with pytest.raises(ValueError, match="selection.metric must be one of"):
        SelectionConfig(metric="log_loss")  # lower is better: not a selection metric


def test_study_runs_every_stage_and_seed_and_a_killed_study_continues(tmp_path):
    recipe = tiny_recipe(tmp_path)
    out = tmp_path / "study"
    command = [sys.executable, "-m", "medkd.cli", "run", str(recipe), "--preset", "two_seeds", "--out", str(out),
               "--no-progress"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = out / "teacher" / "seed0" / "evaluation" / "test.json"
    deadline = time.time() + 180
    while time.time() < deadline and not done.exists():
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert done.exists(), "the first stage must finish before the kill"
    finished_weights = (out / "teacher" / "seed0" / "model.safetensors").stat().st_mtime_ns
    partial = CliRunner().invoke(app, ["report", str(out)])  # the runs evaluated so far, and what is missing
    assert partial.exit_code == 0, partial.output
    markdown = (out / "report.md").read_text()
    assert "Unfinished study" in markdown and "control seed 1" in markdown and "teacher seed 0," not in markdown
    assert re.search(r"^\| teacher +\| +[01]\.\d{3} ", markdown, re.MULTILINE)

    # the resumed study also exports two stages' runs in int8 (the teacher's seed 0 finished before: exported now)
    settings = yaml.safe_load(recipe.read_text())
    settings["export"] = {"stages": ["teacher", "student_kd"], "int8": True, "calibration_images": 32,
                          "latency_repeats": 5, "on_int8_drop": "warn"}  # one epoch: int8 may fall further
    recipe.write_text(yaml.safe_dump(settings))
    result = CliRunner().invoke(app, command[3:])
    assert result.exit_code == 0, result.output
    assert (out / "teacher" / "seed0" / "model.safetensors").stat().st_mtime_ns == finished_weights  # not redone
    exported = pd.read_csv(out / "runs.csv").set_index(["stage", "seed"])
    for stage in ("teacher", "student_kd"):
        for seed in (0, 1):
            report = json.loads((out / stage / f"seed{seed}" / "export" / "export.json").read_text())
            assert (out / stage / f"seed{seed}" / "export" / "model.int8.onnx").exists()
            assert (exported.loc[(stage, seed), "onnx_int8_latency_ms"] == report["latency_ms"]["onnx_int8"]["median"]
                    > 0)
            scored = json.loads((out / stage / f"seed{seed}" / "export" / "test_scores.json").read_text())
            assert exported.loc[(stage, seed), "onnx_int8_test_auc"] == scored["onnx_int8"]["auc"]
            assert set(report["val_scores"]) == {"pytorch", "onnx_fp32", "onnx_int8"}  # export decides on val
    assert not (out / "control" / "seed0" / "export").exists()
    assert exported.loc[("control", 0), ["onnx_int8_latency_ms", "onnx_fp32_latency_ms"]].isna().all()
    cost = (out / "report.md").read_text().split("Cost on the CPU")[1].split("\n\n")[1]
    assert "ONNX int8 ms" in cost.splitlines()[0]
    assert re.search(r"^\| control +\|.*\| +- \| +- \| +- \|$", cost, re.MULTILINE)
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(zip(runs["stage"], runs["seed"])) == sorted(
        (stage, seed) for stage in ("teacher", "student_kd", "control", "baseline") for seed in (0, 1))
    assert runs[["test_auc", "val_auc", "latency_ms", "parameters"]].notna().all().all()
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert set(summary.index) == {"teacher", "student_kd", "control", "baseline"} and "test_auc_std" in summary
    assert "recommended" in result.output
    teacher_of_seed1 = yaml.safe_load((out / "student_kd" / "seed1" / "config.yaml").read_text())["distill"]["teachers"]
    assert teacher_of_seed1 == [str(out / "teacher" / "seed1")]  # each seed's student learns from that seed's teacher

    check_report(out, summary)


def test_one_stage_runs_with_the_stages_it_needs_and_unknown_stages_are_named(tmp_path):
    out = tmp_path / "study"
    command = ["run", str(tiny_recipe(tmp_path)), "--out", str(out)]  # with progress bars, as users run it
    result = CliRunner().invoke(app, [*command, "--stage", "student_kd"])
    assert result.exit_code == 0, result.output
    trained = {path.parents[2].name for path in out.glob("*/seed*/evaluation/test.json")}
    assert trained == {"teacher", "student_kd"}  # the teacher it needs, not the stages it does not
    assert "Unfinished study" in (out / "report.md").read_text()

    # The teacher as if evaluated on another machine, by a session with no record (a medkd before records)
    evaluation = out / "teacher" / "seed0" / "evaluation" / "test.json"
    result = json.loads(evaluation.read_text())
    result["efficiency"]["threads"] = 99
    evaluation.write_text(json.dumps(result))
    sessions = json.loads((out / "study.json").read_text())
    sessions["sessions"][0]["jobs_run"] = 1
    (out / "study.json").write_text(json.dumps(sessions))
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    markdown = " ".join((out / "report.md").read_text().split())
    assert re.search(r"more than one machine, .*: (99 torch threads except \d+ in student_kd seed 0|"
                     r"\d+ torch threads except 99 in teacher seed 0)", markdown)  # a tie: either is the usual one
    assert "At least 1 of the 2 evaluated runs were trained by sessions not recorded here" in markdown

    wrong = CliRunner().invoke(app, [*command, "--stage", "nobody"])
    assert wrong.exit_code != 0 and "nobody: not a stage of the study tiny" in wrong.output
    assert "pick from student_kd, teacher, control, baseline" in wrong.output

    record = out / "teacher" / "seed0" / DATA_LOCATION  # where the run's data was found, for export and evaluate
    assert json.loads(record.read_text())["resolved"] == str((tmp_path / "xray").resolve())
    record.unlink()  # as a run finished before medkd recorded it: running the study again records it
    assert CliRunner().invoke(app, [*command, "--stage", "teacher"]).exit_code == 0
    assert json.loads(record.read_text())["resolved"] == str((tmp_path / "xray").resolve())


def test_accelerator_cpu_keeps_every_prediction_on_the_cpu_beside_a_gpu(tmp_path, monkeypatch):
    # With a GPU said to be there, any prediction that ignored `accelerator: cpu` would try CUDA and fail here.
    recipe = load_recipe(tiny_recipe(tmp_path), {"train": {"accelerator": "cpu"}})
    recipe = recipe.model_copy(update={"stages": [*recipe.stages,
                                                  StageConfig(name="probe", train={"transfer": "linear"})]})
    monkeypatch.setattr(CUDAAccelerator, "is_available", lambda: True)
    runs = run_study(recipe, tmp_path / "study", stages=["student_kd", "probe"], show_progress=False)
    assert sorted(runs["stage"]) == ["probe", "student_kd", "teacher"]  # features, teacher logits, thresholds, scores
    # run_study from Python leaves what `medkd run` leaves: the tables and the report
    summary = pd.read_csv(tmp_path / "study" / "summary.csv", index_col=0)
    assert set(summary.index) == {"probe", "student_kd", "teacher"}
    assert "**student_kd** vs" not in (tmp_path / "study" / "report.md").read_text()  # its control did not run
    assert (tmp_path / "study" / "report.html").exists()


def test_study_with_a_pretraining_stage_and_fewer_labels(tmp_path):
    """A label-efficiency study in miniature: a self-supervised backbone, fine-tuned on half the train
    patients, against the same model from scratch on the same half."""
    recipe = yaml.safe_load(tiny_recipe(tmp_path).read_text())
    half = {"split": {"train_fraction": 0.5}}
    recipe["pretrain"] = {"method": "moco", "epochs": 1, "batch_size": 8, "memory_bank_size": 16,
                          "model": "compact_cnn", "model_args": {"width": 8}}
    recipe["stages"] = [{"name": "from_ssl", "weights_from": "ssl", "data": half, "train": {"transfer": "finetune"}},
                        {"name": "ssl", "pretrain": {}},
                        {"name": "scratch", "data": half},
                        {"name": "scratch_all_labels"}]
    path = tmp_path / "ssl.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "study"
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "scratch_all_labels" in result.output and "…" not in result.output  # a log keeps whole table cells
    # a backbone has no test scores
    assert set(pd.read_csv(out / "runs.csv")["stage"]) == {"from_ssl", "scratch", "scratch_all_labels"}
    used = yaml.safe_load((out / "from_ssl" / "seed0" / "config.yaml").read_text())
    assert used["train"]["weights"] == str(out / "ssl" / "seed0" / "backbone.safetensors")
    assert used["data"]["split"]["train_fraction"] == 0.5
    assert (out / "report.html").exists()
    # scratch ran at two label fractions: the report compares them; from_ssl ran at one and is left out
    report = (out / "report.md").read_text()
    section = report.split("## Label efficiency")[1].split("\n## ")[0]
    runs = pd.read_csv(out / "runs.csv").set_index("stage")
    row = next(line for line in section.splitlines() if "scratch, random init" in line)
    assert "50% labels" in section and "100% labels" in section and "from ssl" not in section
    for stage in ("scratch", "scratch_all_labels"):
        assert f"{runs.loc[stage, 'test_auc']:.3f} / {runs.loc[stage, 'test_accuracy']:.3f}" in row
    assert (out / "report_files" / "labels.png").exists()
    with pytest.raises(ConfigError, match="pretraining stages"):
        stage_order([StageConfig(name="ssl", pretrain={}), StageConfig(name="kd", distill={"teachers": ["ssl"]})])
