"""timm models (`timm/NAME`): timm builds the head and input stem itself; its pretrained config gives the
weights' normalisation and native resolution."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from medkd.models.errors import ModelError
from medkd.models.pretrained import PretrainedConfig, TimmHub


def _timm():
    try:
        import timm
    except ImportError:
        raise ModelError("timm models need timm: pip install timm") from None
    return timm


def build(name: str, num_classes: int, in_chans: int, **kwargs) -> nn.Module:
    """timm's `name` with random weights."""
    timm = _timm()
    if not timm.is_model(name):
        raise ModelError(f"timm has no model '{name}' (timm.list_models() lists them)")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)


def builder(name: str) -> Callable[..., nn.Module]:
    return partial(build, name)


def pretrained_config(name: str) -> PretrainedConfig:
    """timm's pretrained config of `name` as medkd's: weights from timm's hub, timm's normalisation."""
    timm = _timm()
    if not timm.is_model(name):
        raise ModelError(f"timm has no model '{name}' (timm.list_models() lists them)")
    cfg = timm.get_pretrained_cfg(name)
    if cfg is None:
        return PretrainedConfig(providers=())
    return PretrainedConfig(providers=(TimmHub(name),), mean=tuple(cfg.mean), std=tuple(cfg.std),
                            input_size=cfg.input_size[-1], num_classes=cfg.num_classes)
