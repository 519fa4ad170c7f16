"""Distributed training on the CPU (DDP over gloo), each run launched as `medkd` would be: two processes through
Lightning's own launcher, two "nodes" on loopback through torchrun, a run killed and resumed. Every process count
must give one metrics row per epoch, validation metrics over the whole validation split and one run folder."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import write_kermany_like
from medkd.config import load_recipe
from medkd.data import prepare
from medkd.engine import TrainConfig, fit
from medkd.evaluation import evaluate_run
from medkd.files import BACKBONE
from medkd.models import RunCard, create_model

RUN_SECONDS = 240  # a generous bound on one 2-process run of a few seconds' training
SETTLED = {"checkpoints", "config.yaml", "data_location.json", "last.safetensors", "logs", "metrics.csv", "model.json",
           "model.safetensors", "ood_guard.safetensors", "skipped_files.csv", "tensorboard"}


def write_recipe(tmp_path: Path, *, devices: int = 2, epochs: int = 3, **train) -> Path:
    """A recipe over generated X-rays whose classes are hard to tell apart (validation AUC below 1), training a
    compact CNN on `devices` CPU processes."""
    data = tmp_path / "xray"
    if not data.exists():
        write_kermany_like(data, {"train": 4, "test": 2}, patients_per_class=16, band_level=30)
    recipe = {"data": {"path": str(data), "cache_dir": str(tmp_path / "cache"),
                       "preprocessing": {"size": 32, "channels": 1}, "split": {"min_val_size": 1}},
              "train": {"model": "compact_cnn", "model_args": {"width": 8}, "epochs": epochs, "batch_size": 16,
                        "runtime": {"accelerator": "cpu", "devices": devices, "precision": "32",
                                    "threads": 1}, **train}}
    path = tmp_path / f"recipe_{devices}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def medkd(*args: str | Path, cwd: Path) -> subprocess.Popen:
    """`python -m medkd.cli ARGS` in its own process group (killed whole with its DDP children)."""
    return subprocess.Popen([sys.executable, "-m", "medkd.cli", *map(str, args), "--no-progress"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=RUN_SECONDS)
    assert process.returncode == 0, output[-3000:]
    return output


def metric_rows(folder: Path) -> list[dict]:
    import csv

    with open(folder / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def one_process(settings: TrainConfig) -> TrainConfig:
    """The same run in one process."""
    return settings.model_copy(update={"runtime": settings.runtime.model_copy(update={"devices": 1, "num_nodes": 1})})


def check_as_one_process(folder: Path, recipe: Path, reference: Path | None = None) -> None:
    """One row per epoch; the checkpoint chosen on validation AUC over the whole split: the saved best model,
    evaluated in one process on the validation split, scores what training logged; the files of a 1-process run."""
    config = load_recipe(recipe)
    rows = metric_rows(folder)
    assert [int(r["epoch"]) for r in rows] == list(range(config.train.epochs))
    best_logged = max(float(r["val_auc"]) for r in rows)
    card = RunCard.read(folder)
    assert card.best_val_auc == pytest.approx(best_logged, abs=1e-6)
    assert {p.name for p in folder.iterdir()} >= SETTLED
    if reference is not None:
        assert {p.name for p in folder.iterdir()} == {p.name for p in reference.iterdir()}
        assert {p.name for p in (folder / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    evaluated = evaluate_run(folder, "val", data=prepare(config.data, show_progress=False), show_progress=False)
    assert evaluated.at_argmax["auc"] == pytest.approx(best_logged, abs=1e-4)


@pytest.fixture
def teacher(tmp_path: Path) -> Path:
    """A 1-process run to distil from, on the recipe's data."""
    config = load_recipe(write_recipe(tmp_path, devices=1, epochs=1))
    return fit(config.data, config.train.model_copy(update={"model_args": {"width": 16}}), tmp_path / "teacher",
               show_progress=False)


# one 2-process run in `make test`; the other kinds, pre-training, resuming and torchrun in `make test-slow`
@pytest.mark.parametrize("kind", ["train", *(pytest.param(kind, marks=pytest.mark.slow) for kind in (
    "train_images_on_device", "linear", "distill_cached", "distill_online"))])
def test_two_process_ddp_run_is_one_run(tmp_path: Path, kind: str, request) -> None:
    train = {"linear": {"transfer": "linear", "model": "resnet18", "model_args": {}},
             "train_images_on_device": {"images_on_device": True}}.get(kind, {})  # each process holds its own copy
    recipe = write_recipe(tmp_path, **train)
    config = load_recipe(recipe)
    reference_settings = one_process(config.train)
    if kind.startswith("distill"):
        teacher = request.getfixturevalue("teacher")
        outputs = kind.removeprefix("distill_")
        output = finish(medkd("distill", recipe, "--teacher", teacher, "--teacher-outputs", outputs, "--out",
                              tmp_path / "run", cwd=tmp_path))
        from medkd.distillation import DistillConfig, distill

        reference = distill(config.data, reference_settings,
                            DistillConfig(teachers=[str(teacher)], teacher_outputs=outputs), tmp_path / "one",
                            show_progress=False)
        assert RunCard.read(tmp_path / "run").distillation.teacher_outputs == outputs
    else:
        output = finish(medkd("train", recipe, "--out", tmp_path / "run", cwd=tmp_path))
        reference = fit(config.data, reference_settings, tmp_path / "one", show_progress=False)
    said = " ".join(output.split())  # the log's lines as one, however the console wrapped them
    assert "Starting with 2 processes" in said and "MEMBER: 2/2" in said
    assert output.count("run folder:") == 1  # the other process says nothing of its own
    assert ("batches are gathered and augmented there" in said) == (kind == "train_images_on_device")
    check_as_one_process(tmp_path / "run", recipe, reference)


@pytest.mark.slow
def test_two_process_ddp_pretraining(tmp_path: Path) -> None:
    """SimCLR on 2 processes (negatives gathered from both): one loss row per epoch, one backbone, which loads
    into a classifier."""
    recipe = write_recipe(tmp_path)
    spec = yaml.safe_load(recipe.read_text())
    spec["pretrain"] = {"method": "simclr", "model": "compact_cnn", "model_args": {"width": 8}, "epochs": 2,
                        "batch_size": 16, "runtime": spec["train"]["runtime"]}
    recipe.write_text(yaml.safe_dump(spec))
    output = finish(medkd("pretrain", recipe, "--out", tmp_path / "ssl", cwd=tmp_path))
    assert "MEMBER: 2/2" in " ".join(output.split()) and output.count("run folder:") == 1  # however lines wrapped
    assert [int(r["epoch"]) for r in metric_rows(tmp_path / "ssl")] == [0, 1]
    assert all(math.isfinite(float(r["ssl_loss"])) for r in metric_rows(tmp_path / "ssl"))
    create_model("compact_cnn", num_classes=2, in_chans=1, weights=str(tmp_path / "ssl" / BACKBONE), width=8)


@pytest.mark.slow
def test_killed_ddp_run_resumes(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, epochs=40)
    run = tmp_path / "run"
    process = medkd("train", recipe, "--out", run, cwd=tmp_path)
    deadline = time.monotonic() + RUN_SECONDS
    while len(metric_rows(run)) < 2 if (run / "metrics.csv").exists() else True:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0][-3000:]
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and its DDP child, mid-training
    process.wait()
    assert not (run / "model.safetensors").exists()  # killed before the end
    killed_at = len(metric_rows(run))
    output = finish(medkd("train", recipe, "--out", run, cwd=tmp_path))
    assert "resuming" in output
    rows = metric_rows(run)
    assert [int(r["epoch"]) for r in rows] == list(range(40))
    assert len(list((run / "logs").iterdir())) == 2  # one CSV log per attempt: it went on, it did not restart
    assert 2 <= killed_at < 40
    check_as_one_process(run, recipe)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_nodes_on_loopback(tmp_path: Path) -> None:
    """Two torchrun 'nodes' of one process each, as two machines would start them (Lightning reads torchrun's
    environment): the same run folder as a 1-process run."""
    recipe = write_recipe(tmp_path)  # 2 devices: the command line's --devices and --num-nodes win
    port = free_port()
    command = ["-m", "medkd.cli", "train", str(recipe), "--devices", "1", "--num-nodes", "2", "--out",
               str(tmp_path / "run"), "--no-progress"]
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port),
                               *command], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True) for rank in (0, 1)]
    outputs = [finish(node) for node in nodes]
    assert any("MEMBER: 2/2" in " ".join(output.split()) for output in outputs), outputs[0][-3000:]
    config = load_recipe(recipe)
    reference = fit(config.data, one_process(config.train), tmp_path / "one", show_progress=False)
    check_as_one_process(tmp_path / "run", recipe, reference)
