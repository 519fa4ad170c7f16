"""`medkd data check`: output, exit codes (0 clean, 1 leak, 2 bad settings or data) and the JSON report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from conftest import class_image, write_kermany_like
from medkd.cli import app

runner = CliRunner()


def test_check_clean_folder(tmp_path, cache_dir):
    root = write_kermany_like(tmp_path / "xray", {"train": 3, "test": 1}, patients_per_class=10)
    report_file = tmp_path / "report.json"
    result = runner.invoke(app, ["data", "check", "--data", str(root), "--size", "32", "--channels", "1",
                                 "--cache-dir", cache_dir, "--json", str(report_file)])
    assert result.exit_code == 0, result.output
    assert "val (carved)" in result.output and "no leak between splits" in result.output
    report = json.loads(report_file.read_text())
    assert report["source_split_sizes"] == {"train": 60, "test": 20}
    assert all(row["made_here"] == 0 for row in report["patient_overlap"])
    assert report["split_sizes"]["train"] + report["split_sizes"]["val"] == 60


def test_duplicate_across_source_splits_is_a_leak(tmp_path, cache_dir):
    folder = tmp_path / "images"
    folder.mkdir()
    rows = []
    for i in range(20):
        Image.fromarray(class_image(i % 2, i)).save(folder / f"{i}.png")
        rows.append({"path": f"images/{i}.png", "label": i % 2, "patient": f"p{i}", "split": "train"})
    shutil.copy(folder / "3.png", folder / "copy_of_3.png")
    rows.append({"path": "images/copy_of_3.png", "label": 1, "patient": "q1", "split": "test"})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    result = runner.invoke(app, ["data", "check", "--data", str(tmp_path / "m.csv"), "--size", "16",
                                 "--cache-dir", cache_dir])
    assert result.exit_code == 1, result.output
    assert "LEAK" in result.output and "copy_of_3.png" in result.output


def test_shared_patient_ids_across_source_splits_warn_unless_strict(tmp_path, cache_dir):
    root = write_kermany_like(tmp_path / "xray", {"train": 2, "test": 1})
    (root / "test" / "NORMAL" / "IM-1000-0000.jpeg").rename(root / "test" / "NORMAL" / "IM-0001-0099.jpeg")
    args = ["data", "check", "--data", str(root), "--size", "16", "--cache-dir", cache_dir]
    relaxed = runner.invoke(app, args)
    assert relaxed.exit_code == 0 and "IM-0001" in relaxed.output
    strict = runner.invoke(app, [*args, "--strict"])
    assert strict.exit_code == 1 and "LEAK" in strict.output


def test_bad_settings_name_the_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  path: somewhere\n  preprocessing:\n    resize: stretch\n    colour: 3\n")
    result = runner.invoke(app, ["data", "check", str(recipe)])
    assert result.exit_code == 2
    assert "data.preprocessing.resize" in result.output and "'squash', 'pad' or 'crop'" in result.output
    assert "data.preprocessing.colour: unknown key" in result.output


def test_console_script_is_installed():
    medkd = Path(sys.executable).parent / "medkd"
    result = subprocess.run([str(medkd), "data", "check", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--data" in result.stdout


def test_a_training_command_prints_each_console_line_once(tmp_path):
    """Lightning's own console handler and medkd's both printed its records; a real `medkd train` process (its
    own stderr) now prints each once."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = write_kermany_like(tmp_path / "xray", {"train": 2, "test": 1}, patients_per_class=10)
    medkd = Path(sys.executable).with_name("medkd")
    done = subprocess.run([str(medkd), "train", "--data", str(root), "--size", "16", "--channels", "1", "--model",
                           "compact_cnn", "--epochs", "1", "--out", str(tmp_path / "run"), "--cache-dir",
                           str(tmp_path / "cache"), "--no-progress"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("max_epochs=1` reached") == 1, done.stderr
    assert not any(line.startswith("INFO: ") for line in done.stderr.splitlines())
