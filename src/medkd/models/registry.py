"""One factory, `create_model`, over a registry of medkd's own models, torchvision's classifiers and timm's.

Each registered model may carry a `PretrainedConfig` (where its ImageNet weights come from, its normalisation
and native resolution); torchvision and `timm/NAME` models get theirs from those libraries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from medkd.models import timm_models, torchvision_models
from medkd.models.errors import ModelError
from medkd.models.pretrained import IMAGENET, PretrainedConfig, TorchvisionHub
from medkd.models.surgery import adapt_first_conv, replace_classifier
from medkd.models.weights import load_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[..., nn.Module]  # build(num_classes, in_chans, **kwargs) with random weights
    pretrained: PretrainedConfig | None = None


_REGISTERED: dict[str, ModelEntry] = {}


def register_model(name: str, pretrained: PretrainedConfig | None = None):
    """Decorator: register `build(num_classes, in_chans, **kwargs) -> nn.Module` as `name`, with where its
    pretrained weights come from (None: it has none)."""

    def decorate(build: Callable[..., nn.Module]):
        if name in _REGISTERED:
            log.warning("model %s registered again: the later registration wins", name)
        _REGISTERED[name] = ModelEntry(build, pretrained)
        return build

    return decorate


def _torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _timm_names() -> list[str]:
    try:
        import timm
    except ImportError:
        return []
    return timm.list_models()


def list_models() -> list[str]:
    """Every name `create_model` accepts: registered models, torchvision classifiers, and `timm/NAME`."""
    return sorted(_REGISTERED) + _torchvision_names() + [f"timm/{n}" for n in _timm_names()]


def model_entry(name: str) -> ModelEntry:
    """How to build model `name` and where its pretrained weights come from."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name.startswith("timm/"):
        timm_name = name.removeprefix("timm/")
        return ModelEntry(timm_models.builder(timm_name), timm_models.pretrained_config(timm_name))
    if name in _torchvision_names():
        return ModelEntry(torchvision_models.builder(name), PretrainedConfig(providers=(TorchvisionHub(name),)))
    raise ModelError(
        f"unknown model '{name}'; registered models are {sorted(_REGISTERED)}, any torchvision classifier "
        "(e.g. resnet18, resnet50, densenet121, efficientnet_b0, mobilenet_v3_small), or timm/NAME"
    )


def pretrained_config(name: str) -> PretrainedConfig:
    """Model `name`'s pretrained config; ImageNet statistics and no weights for a model that has none."""
    return model_entry(name).pretrained or IMAGENET


def normalisation(in_chans: int, architecture: str | None = None) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of inputs scaled to [0, 1] for `architecture` (its pretrained weights' own;
    ImageNet's when it has none or none is named), averaged over RGB for grey input."""
    config = pretrained_config(architecture) if architecture else IMAGENET
    return config.normalisation(in_chans)


def create_model(name: str, num_classes: int, in_chans: int = 3, weights: str | None = None, **kwargs) -> nn.Module:
    """Build model `name` with a `num_classes` head for `in_chans`-channel input.

    weights: None/"none" (random init), "imagenet" (the architecture's pretrained weights, from the first of
    its providers available here; `model.medkd_weights_source` says which), or a checkpoint path (safetensors,
    or .pth/.pt loaded with weights_only=True).
    """
    entry = model_entry(name)
    if weights != "imagenet":
        model = entry.build(num_classes=num_classes, in_chans=in_chans, **kwargs)
        if weights not in (None, "none"):
            load_checkpoint(model, weights)
        return model
    if entry.pretrained is None or not entry.pretrained.providers:
        raise ModelError(f"{name} has no ImageNet weights (it is medkd's own model); use weights: none or a "
                         "checkpoint path")
    config = entry.pretrained
    model = entry.build(num_classes=config.num_classes, in_chans=3, **kwargs)
    source = config.load_into(model, name)
    if num_classes != config.num_classes:
        model = replace_classifier(model, num_classes)
    model = adapt_first_conv(model, in_chans)
    model.medkd_weights_source = source  # like timm's model.pretrained_cfg: what the run sidecar records
    return model


# medkd's own models register themselves on import, as timm's model modules do; importing them here makes every
# lookup see them, whichever public name was used first.
from medkd.models import cnn, efficientnet_lite  # noqa: E402, F401
