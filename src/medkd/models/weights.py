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
    """What `load_checkpoint` did.

    Attributes
    ----------
    prefix : str
        The wrapper prefix taken off the checkpoint's names (one of KNOWN_PREFIXES), "" for none.
    loaded : int
        Tensors of the checkpoint loaded into the model.
    missing : list of str
        The model's tensors, other than its head's, that the checkpoint lacks.
    unexpected : list of str
        The checkpoint's tensors that the model has no place for.
    head_skipped : bool
        The head kept its initialisation: absent from the checkpoint, or of another class count.
    """

    prefix: str
    loaded: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    head_skipped: bool = False


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, unwrapped from {'state_dict': ...} / {'model': ...} containers.

    Parameters
    ----------
    path : str or Path
        A .safetensors file, or a torch file (.pth, .pt) read with weights_only=True.

    Returns
    -------
    dict of str to torch.Tensor
        On the CPU, under the checkpoint's own names.

    Raises
    ------
    ModelError
        When the file is missing, a torch file is not loadable with weights_only=True, or it holds no state dict
        of tensors.
    """
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
    first convolution of other input channels. Missing or unexpected keys are an error when `strict`.

    The prefix is the one of KNOWN_PREFIXES (or none) under which most names match the model's; a head tensor of
    another shape is left out (the head stays as initialised), and an RGB convolution weight (out, 3, k, k) is
    summed over its channels for a grey model's (out, 1, k, k).

    Parameters
    ----------
    model : nn.Module
        Loaded in place.
    path : str or Path
        A checkpoint file (see `read_state_dict`).
    strict : bool, default True
        Refuse missing or unexpected keys; a head missing from the checkpoint is always allowed.

    Returns
    -------
    LoadReport

    Raises
    ------
    ModelError
        When the file cannot be read, a tensor outside the head has another shape than the model's (other than the
        RGB-to-grey fold), or, when `strict`, keys are missing or unexpected.
    """
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
