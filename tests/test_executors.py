"""Studies that outgrow one process: the runs as Ray tasks (local Ray, 2 workers), and MLflow tracking read back
with MLflow's own client."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from conftest import write_kermany_like
from medkd.cli import app

SCORES = ["val_auc", "test_auc", "test_accuracy", "test_recall", "test_specificity"]


def study_recipe(tmp_path: Path, *, broken: bool) -> Path:
    """A teacher and its student over 2 seeds on generated X-rays, one thread a run (so that a run computes the
    same wherever it runs); with `broken`, a stage that fails when it trains (a GPU on a machine without one) and
    a student that needs it."""
    data = write_kermany_like(tmp_path / "xray", {"train": 3, "test": 2}, patients_per_class=10)
    stages = [{"name": "teacher", "train": {"model_args": {"width": 8}}},
              {"name": "student", "distill": {"teachers": ["teacher"], "temperature": 2.0}}]
    if broken:
        stages += [{"name": "broken", "train": {"runtime": {"accelerator": "gpu"}}},
                   {"name": "broken_student", "distill": {"teachers": ["broken"]}}]
    recipe = {"name": "two_workers",
              "data": {"path": str(data), "cache_dir": str(tmp_path / "cache"),
                       "preprocessing": {"size": 32, "channels": 1}, "split": {"min_val_size": 1}},
              "train": {"model": "compact_cnn", "model_args": {"width": 4}, "epochs": 1, "batch_size": 16,
                        "precision": "32", "runtime": {"threads": 1}},
              "evaluation": {"bootstrap_resamples": 0}, "stages": stages, "seeds": 2}
    path = tmp_path / f"{'broken' if broken else 'plain'}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def last_session(out: Path) -> dict:
    return json.loads((out / "study.json").read_text())["sessions"][-1]


@pytest.fixture
def local_ray():
    """A local Ray of 2 workers (medkd[ray], in the dev extra), shut down after the test."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_a_study_on_local_ray_matches_the_sequential_one_and_reports_a_failed_run(tmp_path, local_ray):
    ray_out, plain_out = tmp_path / "on_ray", tmp_path / "here"
    result = CliRunner().invoke(app, ["run", str(study_recipe(tmp_path, broken=True)), "--out", str(ray_out),
                                      "--executor", "ray", "--cpus-per-run", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    outcomes = {(o["stage"], o["seed"]): o for o in last_session(ray_out)["runs"]}
    assert {key: o["status"] for key, o in outcomes.items()} == {
        ("teacher", 0): "trained", ("teacher", 1): "trained", ("student", 0): "trained", ("student", 1): "trained",
        ("broken", 0): "failed", ("broken", 1): "failed", ("broken_student", 0): "blocked",
        ("broken_student", 1): "blocked"}
    assert "MisconfigurationException" in outcomes[("broken", 0)]["error"]
    assert outcomes[("broken_student", 1)]["error"] == "needs broken seed 1"
    for seed in (0, 1):  # a student starts when its teacher of the same seed is done
        assert outcomes[("student", seed)]["started"] >= outcomes[("teacher", seed)]["ended"]
    CliRunner().invoke(app, ["run", str(study_recipe(tmp_path, broken=False)), "--out", str(plain_out),
                             "--no-progress"])
    on_ray = pd.read_csv(ray_out / "runs.csv").set_index(["stage", "seed"]).sort_index()
    here = pd.read_csv(plain_out / "runs.csv").set_index(["stage", "seed"]).sort_index()
    assert list(on_ray.index) == list(here.index)  # the failed and blocked runs have no row
    pd.testing.assert_frame_equal(on_ray[SCORES], here[SCORES], atol=5e-4, rtol=0)  # equal to 3 digits
    assert "broken" in (ray_out / "report.md").read_text()  # named among the runs not evaluated
    again = CliRunner().invoke(app, ["run", str(study_recipe(tmp_path, broken=True)), "--out", str(ray_out),
                                     "--executor", "ray", "--no-progress"])
    assert again.exit_code == 0, again.output
    statuses = {(o["stage"], o["seed"]): o["status"] for o in last_session(ray_out)["runs"]}
    assert all(statuses[(stage, seed)] == "finished before" for stage in ("teacher", "student") for seed in (0, 1))
    assert last_session(ray_out)["jobs_run"] == 0


def test_mlflow_holds_the_runs_settings_epochs_scores_and_files_under_the_study(tmp_path):
    out = tmp_path / "tracked"
    result = CliRunner().invoke(app, ["run", str(study_recipe(tmp_path, broken=False)), "--out", str(out),
                                      "--seeds", "1", "--tracking", "mlflow", "--no-progress"])
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("two_workers")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"two_workers", "teacher/seed0", "student/seed0"}
    parent = runs["two_workers"].info.run_id
    for name in ("teacher/seed0", "student/seed0"):
        run = client.get_run(runs[name].info.run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.params["train.model"] == "compact_cnn" and run.data.params["data.preprocessing.size"] == "32"
        assert len(client.get_metric_history(run.info.run_id, "val_auc")) == 1  # one epoch
        evaluation = json.loads((out / name / "evaluation" / "test.json").read_text())
        assert run.data.metrics["test/auc"] == pytest.approx(evaluation["at_threshold"]["auc"])
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"model.json", "config.yaml", "evaluation"} <= files
        assert {"evaluation/test.json", "evaluation/val_predictions.csv"} <= {
            a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "distill.temperature" in client.get_run(runs["student/seed0"].info.run_id).data.params
    assert {"runs.csv", "report.html"} <= {a.path for a in client.list_artifacts(parent)}
    # a run trained alone: its own run in the experiment medkd, its exported ONNX among its files
    run = tmp_path / "alone" / "run"
    assert CliRunner().invoke(app, ["train", "--data", str(tmp_path / "xray"), "--size", "32", "--channels", "1",
                                    "--model", "compact_cnn", "--epochs", "1", "--out", str(run), "--tracking",
                                    "mlflow", "--cache-dir", str(tmp_path / "cache"), "--no-progress"]).exit_code == 0
    assert CliRunner().invoke(app, ["export", str(run)]).exit_code == 0
    store = MlflowClient(tracking_uri=f"sqlite:///{run.parent / 'mlflow.db'}")
    alone = store.search_runs([store.get_experiment_by_name("medkd").experiment_id])[0]
    assert {a.path for a in store.list_artifacts(alone.info.run_id, "export")} >= {"export/model.onnx"}


def test_a_missing_extra_is_named_when_the_settings_are_read(monkeypatch):
    import importlib.util
    import sys

    from medkd.config import ConfigError
    from medkd.device import RuntimeConfig
    from medkd.runner.ray_executor import import_ray

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ValueError, match=r"needs MLflow: pip install 'medkd\[mlflow\]'"):
        RuntimeConfig(tracking="mlflow")
    with pytest.raises(ValueError, match="unknown tracking 'wandb'"):
        RuntimeConfig(tracking="wandb")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"needs Ray: pip install 'medkd\[ray\]'"):
        import_ray()
