"""`medkd run`: stages in dependency order, several seeds, finished stages skipped after a kill, one table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import write_kermany_like
from medkd.cli import app
from medkd.config import ConfigError, load_recipe
from medkd.config.stages import StageConfig
from medkd.study import recommend, stage_order


def tiny_recipe(tmp_path: Path) -> Path:
    data = write_kermany_like(tmp_path / "xray", {"train": 3, "test": 2}, patients_per_class=10)
    recipe = {
        "name": "tiny",
        "data": {"path": str(data), "cache_dir": str(tmp_path / "cache"), "preprocessing": {"size": 32, "channels": 1},
                 "split": {"min_val_size": 1}},
        "train": {"model": "compact_cnn", "model_args": {"width": 8}, "epochs": 1, "batch_size": 16, "precision": "32"},
        "evaluation": {"bootstrap_resamples": 20},
        "stages": [  # the student is listed before its teacher on purpose
            {"name": "student_kd", "distill": {"teachers": ["teacher"], "temperature": 2.0}},
            {"name": "teacher", "train": {"model_args": {"width": 16}}},
            {"name": "baseline", "train": {"model": "baseline_cnn", "model_args": {"width": 4, "hidden": 16}}},
        ],
        "presets": {"two_seeds": {"seeds": 2}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_teachers_come_first_and_unknown_or_cyclic_teachers_are_refused():
    stages = [StageConfig(name="s", distill={"teachers": ["t"]}), StageConfig(name="t")]
    assert [s.name for s in stage_order(stages)] == ["t", "s"]
    with pytest.raises(ConfigError, match="not stages"):
        stage_order([StageConfig(name="s", distill={"teachers": ["nobody"]})])
    with pytest.raises(ConfigError, match="cycle"):
        stage_order([StageConfig(name="a", distill={"teachers": ["b"]}), StageConfig(name="b", distill={"teachers": ["a"]})])


def test_recommendation_uses_validation_and_speed_only():
    summary = pd.DataFrame({"val_auc_mean": [0.95, 0.945, 0.90], "latency_ms_mean": [30.0, 2.0, 0.5],
                            "test_auc_mean": [0.80, 0.70, 0.99]}, index=["big", "small", "tiny"])
    assert recommend(summary, "auc", 0.01) == "small"  # tiny is fastest and best on test, but 0.05 behind on val


def test_unknown_preset_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no preset 'fast'.*two_seeds"):
        load_recipe(tiny_recipe(tmp_path), preset="fast")


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

    result = CliRunner().invoke(app, command[3:])
    assert result.exit_code == 0, result.output
    assert (out / "teacher" / "seed0" / "model.safetensors").stat().st_mtime_ns == finished_weights  # not redone
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(zip(runs["stage"], runs["seed"])) == sorted(
        (stage, seed) for stage in ("teacher", "student_kd", "baseline") for seed in (0, 1))
    assert runs[["test_auc", "val_auc", "latency_ms", "parameters"]].notna().all().all()
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert set(summary.index) == {"teacher", "student_kd", "baseline"} and "test_auc_std" in summary
    assert "recommended" in result.output
    teacher_of_seed1 = yaml.safe_load((out / "student_kd" / "seed1" / "config.yaml").read_text())["distill"]["teachers"]
    assert teacher_of_seed1 == [str(out / "teacher" / "seed1")]  # each seed's student learns from that seed's teacher
