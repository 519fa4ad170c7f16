"""One factory, `create_model`, over a registry of medkd's own models, torchvision's classifiers and timm's."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from medkd.models.errors import ModelError

_BUILTINS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator: register `build(num_classes, in_chans, **kwargs) -> nn.Module` as `name`."""

    def decorate(build: Callable[..., nn.Module]):
        _BUILTINS[name] = build
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
    """Every name `create_model` accepts: builtins, torchvision classifiers, and `timm/NAME` when timm is installed."""
    return sorted(_BUILTINS) + _torchvision_names() + [f"timm/{n}" for n in _timm_names()]


def create_model(name: str, num_classes: int, in_chans: int = 3, weights: str | None = None, **kwargs) -> nn.Module:
    """Build model `name` with a `num_classes` head for `in_chans`-channel input.

    weights: None (random init), "imagenet" (the library's own pretrained weights), or a checkpoint path
    (safetensors, or .pth/.pt loaded with weights_only=True).
    """
    from medkd.models import torchvision_models, timm_models
    from medkd.models.weights import load_checkpoint

    imagenet = weights == "imagenet"
    if name in _BUILTINS:
        if imagenet:
            raise ModelError(f"{name} is medkd's own model and has no ImageNet weights; use weights: none or a checkpoint path")
        model = _BUILTINS[name](num_classes=num_classes, in_chans=in_chans, **kwargs)
    elif name.startswith("timm/"):
        model = timm_models.build(name.removeprefix("timm/"), num_classes, in_chans, imagenet, **kwargs)
    elif name in _torchvision_names():
        model = torchvision_models.build(name, num_classes, in_chans, imagenet, **kwargs)
    else:
        raise ModelError(
            f"unknown model '{name}'; builtins are {sorted(_BUILTINS)}, any torchvision classifier "
            "(e.g. resnet18, resnet50, densenet121, efficientnet_b0, mobilenet_v3_small), or timm/NAME with timm installed"
        )
    if weights not in (None, "none", "imagenet"):
        load_checkpoint(model, weights)
    return model


def classifier_name(model: nn.Module) -> str:
    """Qualified name of the model's final fully-connected layer (its classification head)."""
    last = None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = module_name
    if last is None:
        raise ModelError(f"{type(model).__name__} has no fully-connected classification head")
    return last


def replace_classifier(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the final fully-connected layer for a new one with `num_classes` outputs."""
    name = classifier_name(model)
    old = model.get_submodule(name)
    model.set_submodule(name, nn.Linear(old.in_features, num_classes))
    return model


def adapt_first_conv(model: nn.Module, in_chans: int) -> nn.Module:
    """Make the first convolution take `in_chans` channels; RGB weights are summed into one grey channel
    (or repeated and rescaled), so pretrained filters respond to grey images as they did to grey RGB ones."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels == in_chans:
                return model
            new = nn.Conv2d(in_chans, module.out_channels, module.kernel_size, module.stride, module.padding,
                            module.dilation, module.groups, module.bias is not None, module.padding_mode)
            with torch.no_grad():
                weight = module.weight
                if in_chans == 1:
                    new.weight.copy_(weight.sum(dim=1, keepdim=True))
                else:
                    repeats = -(-in_chans // weight.shape[1])
                    new.weight.copy_(weight.repeat(1, repeats, 1, 1)[:, :in_chans] * weight.shape[1] / in_chans)
                if module.bias is not None:
                    new.bias.copy_(module.bias)
            model.set_submodule(name, new)
            return model
    raise ModelError(f"{type(model).__name__} has no convolution to adapt to {in_chans} input channels")


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalisation(in_chans: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of inputs scaled to [0, 1]: ImageNet's, averaged over RGB for grey input
    (matching the grey first convolution folded from RGB weights)."""
    if in_chans == 3:
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    return [sum(IMAGENET_MEAN) / 3] * in_chans, [sum(IMAGENET_STD) / 3] * in_chans
