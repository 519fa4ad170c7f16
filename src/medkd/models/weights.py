"""Load a local checkpoint into a model: safetensors, or .pth/.pt read with weights_only=True."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from medkd.models.errors import ModelError
from medkd.models.surgery import classifier_name

log = logging.getLogger(__name__)
# Wrappers that prefix parameter names: DDP, Lightning modules, SSL backbones.
KNOWN_PREFIXES = ("module.", "model.", "student.", "backbone.", "encoder.")


@dataclass
class LoadReport:
    prefix: str
    loaded: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    head_skipped: bool = False


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, unwrapped from {'state_dict': ...} / {'model': ...} containers."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"weights file {path} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refuses arbitrary objects: say so plainly
        raise ModelError(f"{path} is not a plain tensor checkpoint loadable with weights_only=True ({err})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} holds no state dict of tensors")
    return state


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)} if prefix else dict(state)


def load_checkpoint(model: nn.Module, path: str | Path, *, strict: bool = True) -> LoadReport:
    """Load `path` into `model`, handling a wrapper prefix, a head of another class count and a
    first convolution of other input channels. Missing or unexpected keys are an error when `strict`."""
    state = read_state_dict(path)
    own = model.state_dict()
    prefix = max(("", *KNOWN_PREFIXES), key=lambda p: len(own.keys() & _strip(state, p).keys()))
    state = _strip(state, prefix)
    head = classifier_name(model)
    report = LoadReport(prefix=prefix, loaded=0)
    for key, value in list(state.items()):
        if key not in own or own[key].shape == value.shape:
            continue
        if key.startswith(head + "."):
            del state[key]
            report.head_skipped = True
        elif value.ndim == 4 and own[key].ndim == 4 and own[key].shape[1] == 1 and value.shape[1] == 3:
            state[key] = value.sum(dim=1, keepdim=True)  # RGB first conv folded onto grey input
        else:
            raise ModelError(f"{path}: '{key}' has shape {tuple(value.shape)}, "
                             f"the model expects {tuple(own[key].shape)}")
    result = model.load_state_dict(state, strict=False)
    head_missing = [k for k in result.missing_keys if k.startswith(head + ".")]
    # a backbone checkpoint (e.g. from `medkd pretrain`) has no head: the new head stays as initialised
    report.head_skipped = report.head_skipped or bool(head_missing)
    report.missing = [k for k in result.missing_keys if k not in head_missing]
    report.unexpected = list(result.unexpected_keys)
    report.loaded = len(state) - len(report.unexpected)
    if strict and (report.missing or report.unexpected):
        raise ModelError(
            f"{path} does not fit {type(model).__name__}: {len(report.missing)} missing keys "
            f"{report.missing[:5]}, {len(report.unexpected)} unexpected keys {report.unexpected[:5]}; "
            "is it a checkpoint of the same architecture?"
        )
    log.info("loaded %d tensors from %s%s%s", report.loaded, path, f" (prefix '{prefix}' removed)" if prefix else "",
             "; head left new (absent, or of another class count)" if report.head_skipped else "")
    return report
