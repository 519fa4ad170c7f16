"""The run folder contract: weights in safetensors plus a JSON sidecar, enough to rebuild the model alone.

Later stages (evaluate, distill, export, serve) load models through `load_model` and nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from medkd.files import BEST, SIDECAR, staged, write_json
from medkd.models.errors import ModelError
from medkd.models.registry import create_model

SIDECAR_FORMAT = 1


def save_model(folder: Path, model: nn.Module, sidecar: dict, filename: str = BEST) -> None:
    """Write `model`'s weights as `filename` and the sidecar (architecture, classes, preprocessing, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with staged(folder / filename) as staging:
        save_file(state, staging)
    write_json(folder / SIDECAR, {"format": SIDECAR_FORMAT, **sidecar})


def read_sidecar(folder: Path) -> dict:
    path = Path(folder) / SIDECAR
    if not path.exists():
        raise ModelError(f"{folder} is not a finished run folder: {SIDECAR} is missing (train it first)")
    return json.loads(path.read_text())


def load_model(folder: str | Path, filename: str = BEST) -> tuple[nn.Module, dict]:
    """Rebuild the model of a run folder from its sidecar and weights; returns (model in eval mode, sidecar)."""
    folder = Path(folder)
    sidecar = read_sidecar(folder)
    model = create_model(sidecar["architecture"], num_classes=len(sidecar["classes"]), in_chans=sidecar["in_chans"],
                         **sidecar.get("model_args", {}))
    model.load_state_dict(load_file(folder / filename))
    return model.eval(), sidecar
