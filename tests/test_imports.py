"""Importing medkd changes nothing of the program that imports it, and the CLI answers without loading torch."""

import json
import subprocess
import sys
import time

PROGRAM = """
import json, logging, sys, warnings
from PIL import Image
Image.MAX_IMAGE_PIXELS = 12345  # the program's own setting
# the libraries medkd uses install filters of their own on import: load them first, then compare
import torch, lightning, timm, torchvision, torchmetrics, sklearn, onnxruntime, fastapi, lightly, kornia, pydicom
import pytorch_grad_cam, matplotlib, pandas
filters = list(warnings.filters)
pydicom_handlers = list(logging.getLogger("pydicom").handlers)
import medkd.config, medkd.data, medkd.deploy, medkd.distillation, medkd.engine, medkd.evaluation, medkd.models
import medkd.pretrain, medkd.report, medkd.site, medkd.study
from medkd.data import decode_file, prepare  # modules loaded on first use
from medkd.engine import fit
from medkd.distillation import distill
from medkd.runner import run_study
from medkd.deploy import export_run, serve
from medkd.report import write_report
from medkd.pretrain import pretrain
pydicom = logging.getLogger("pydicom")
print(json.dumps({"max_pixels": Image.MAX_IMAGE_PIXELS, "filters_unchanged": list(warnings.filters) == filters,
                  "pydicom_propagates": pydicom.propagate,
                  "pydicom_handlers_unchanged": pydicom.handlers == pydicom_handlers,
                  "torch_loaded": "torch" in sys.modules}))
"""


def run_python(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_medkd_leaves_pillow_warnings_and_logging_as_they_were():
    state = run_python(PROGRAM)
    assert state == {"max_pixels": 12345, "filters_unchanged": True, "pydicom_propagates": True,
                     "pydicom_handlers_unchanged": True, "torch_loaded": True}


def test_settings_and_the_cli_load_without_torch():
    state = run_python("import sys, json\nimport medkd.cli\nfrom medkd.config import load_recipe, Recipe\n"
                       "from medkd.data import DataConfig\nfrom medkd.engine import TrainConfig\n"
                       "print(json.dumps({name: name in sys.modules for name in "
                       "('torch', 'lightning', 'timm', 'sklearn', 'onnxruntime', 'fastapi')}))")
    assert not any(state.values()), state


def test_medkd_help_answers_quickly():
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "medkd.cli", "--help"], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    assert "distill" in result.stdout and "run" in result.stdout
    # 0.7 s measured on a quiet 2-core AMD EPYC (2 s with its cores busy); importing torch adds 2-4 s there
    assert elapsed < 3.0, f"medkd --help took {elapsed:.1f} s"


# The layers, lowest first (docs/architecture.md): a package imports only packages of lower layers (and the base
# modules), never a higher one or one of its own layer.
LAYERS = [{"errors", "settings", "files", "device", "environment", "registry", "tracking"}, {"data"}, {"models"},
          {"evaluation"}, {"engine"}, {"distillation", "pretrain", "derive"}, {"deploy", "site"}, {"config"}, {"study"},
          {"report"}, {"runner"}, {"cli"}, {"__main__"}]  # __main__: python -m medkd


def test_no_package_imports_a_higher_one():
    import ast
    from pathlib import Path

    import medkd

    root = Path(medkd.__file__).parent
    rank = {name: level for level, names in enumerate(LAYERS) for name in names}
    wrong = []
    for path in root.rglob("*.py"):
        here = path.relative_to(root).parts[0].removesuffix(".py")
        if here == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medkd."):
                there = node.module.split(".")[1]
                base = rank[here] == 0 and rank[there] == 0
                if there != here and not base and rank[there] >= rank[here]:
                    wrong.append(f"{path.relative_to(root)} imports medkd.{there}")
    assert not wrong, wrong
