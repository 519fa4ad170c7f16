"""Self-supervised pretraining: the loss falls on real X-rays, the test split is never opened, and the
backbone loads into train and distill with no missing or unexpected keys."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import kermany_like_config
from medkd.cli import app
from medkd.data import DataConfig
from medkd.distillation import DistillConfig, distill
from medkd.engine import TrainConfig, fit
from medkd.files import BACKBONE
from medkd.models import create_model, load_checkpoint
from medkd.pretrain import PretrainConfig, pretrain

TINY = {"model": "compact_cnn", "model_args": {"width": 16}}


@pytest.mark.real_data
def test_moco_pretraining_on_real_xrays_lowers_its_loss(real_data, tmp_path):
    data = DataConfig(path=str(real_data / "chest_xray_fullres_sample"), cache_dir=str(tmp_path / "cache"),
                      preprocessing={"size": 64, "channels": 1})
    settings = PretrainConfig(method="moco", memory_bank_size=0, epochs=8, batch_size=16, lr=3e-3, **TINY)
    out = pretrain(data, settings, tmp_path / "moco", show_progress=False)
    losses = pd.read_csv(out / "metrics.csv")["ssl_loss"].to_numpy()
    assert len(losses) == 8 and losses[-2:].mean() < losses[0] - 0.1, losses
    assert json.loads((out / "pretrain.json").read_text())["images"] == 90


def test_test_split_is_never_opened_and_the_backbone_loads_everywhere(tmp_path):
    config = kermany_like_config(tmp_path, patients_per_class=8)
    for image in (tmp_path / "xray" / "test").rglob("*.jpeg"):
        image.write_bytes(b"opened by pretrain? this is not an image")  # decoding it would stop the run
    strict = config.model_copy(update={"on_bad_file": "fail"})
    out = pretrain(strict, PretrainConfig(method="simclr", epochs=1, batch_size=16, **TINY), tmp_path / "ssl",
                   show_progress=False)
    train_images = len(list((tmp_path / "xray" / "train").rglob("*.jpeg")))
    assert json.loads((out / "pretrain.json").read_text())["images"] == train_images
    backbone = out / BACKBONE

    report = load_checkpoint(create_model("compact_cnn", num_classes=2, in_chans=1, width=16), backbone)
    assert report.missing == [] and report.unexpected == [] and report.head_skipped and report.loaded > 0
    for image in (tmp_path / "xray" / "test").rglob("*.jpeg"):  # training and evaluation do need the test set
        image.unlink()
    data = kermany_like_config(tmp_path / "again", patients_per_class=8)
    settings = TrainConfig(weights=str(backbone), transfer="finetune", epochs=1, batch_size=32, **TINY)
    teacher = fit(data, settings, tmp_path / "teacher", show_progress=False)
    student = distill(data, settings, DistillConfig(teachers=[str(teacher)]), tmp_path / "student",
                      show_progress=False)
    assert json.loads((student / "model.json").read_text())["weights"] == str(backbone)


def test_pretrain_command_writes_a_backbone_and_says_how_to_use_it(tmp_path):
    data = kermany_like_config(tmp_path, patients_per_class=6)
    result = CliRunner().invoke(app, ["pretrain", "--data", data.path, "--cache-dir", data.cache_dir, "--size", "32",
                                      "--channels", "1", "--model", "compact_cnn", "--method", "moco", "--epochs", "1",
                                      "--batch-size", "8", "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"--weights {tmp_path / 'run' / BACKBONE}" in result.output.replace("\n", "")
    too_big = CliRunner().invoke(app, ["pretrain", "--data", data.path, "--cache-dir", data.cache_dir, "--size", "32",
                                       "--model", "compact_cnn", "--batch-size", "4096", "--out", str(tmp_path / "x")])
    assert too_big.exit_code == 2 and "lower pretrain.batch_size" in too_big.output.replace("\n", "")
