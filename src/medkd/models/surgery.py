"""Layer surgery on classifiers: find and replace the head, give the first convolution other input channels,
take the head off for features."""

from __future__ import annotations

import copy

import torch
from torch import nn

from medkd.models.errors import ModelError


def declared_layer(model: nn.Module, role: str) -> str | None:
    """The qualified name of `model`'s `role` layer ("stem": its first convolution, "classifier": its head) as
    declared: by its registry entry (model.medkd_layers), or by timm (pretrained_cfg's first_conv, classifier).

    Parameters
    ----------
    model : nn.Module
    role : {"stem", "classifier"}

    Returns
    -------
    str or None
        None when undeclared, or when the declared name is no module of `model` (surgery renamed it).
    """
    declared = (getattr(model, "medkd_layers", None) or {}).get(role)
    if declared is None:
        timm_key = {"stem": "first_conv", "classifier": "classifier"}[role]
        declared = (getattr(model, "pretrained_cfg", None) or {}).get(timm_key)
    if declared is None or declared not in dict(model.named_modules()):
        return None  # undeclared, or a name of the network before surgery renamed it
    return declared


def classifier_name(model: nn.Module) -> str:
    """Qualified name of the model's classification head: as declared (declared_layer), else its last
    fully-connected layer (torchvision's classifiers).

    Parameters
    ----------
    model : nn.Module

    Returns
    -------
    str
        The name of an nn.Linear layer; "" when `model` is itself the head (a linear probe's).

    Raises
    ------
    ModelError
        When `model` has no fully-connected layer.
    """
    declared = declared_layer(model, "classifier")
    if declared is not None and isinstance(model.get_submodule(declared), nn.Linear):
        return declared
    last = None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = module_name
    if last is None:
        raise ModelError(f"{type(model).__name__} has no fully-connected classification head")
    return last


def feature_width(model: nn.Module) -> int:
    """The width of the pooled features the classification head takes.

    Parameters
    ----------
    model : nn.Module

    Returns
    -------
    int
        D, the head's in_features: the width of the features (N, D) that `headless(model)` outputs.

    Raises
    ------
    ModelError
        When `model` has no fully-connected head.
    """
    head = model.get_submodule(classifier_name(model))
    assert isinstance(head, nn.Linear)  # classifier_name names a Linear layer
    return head.in_features


def replace_classifier(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the final fully-connected layer for a new one with `num_classes` outputs."""
    name = classifier_name(model)
    old = model.get_submodule(name)
    assert isinstance(old, nn.Linear)  # classifier_name names a Linear layer
    model.set_submodule(name, nn.Linear(old.in_features, num_classes))
    return model


def folded_weight(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """First-convolution weights (out, 3, k, k) for `in_chans` inputs: RGB summed into one grey channel (a grey
    image then gives what the RGB filters gave on that image replicated), or repeated and rescaled."""
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_chans // weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * weight.shape[1] / in_chans


def adapt_first_conv(model: nn.Module, in_chans: int) -> nn.Module:
    """Make the first convolution take `in_chans` channels, its weights folded (`folded_weight`), so pretrained
    filters respond to grey images as they did to grey RGB ones. The convolution is the declared stem
    (declared_layer), else the first one."""
    declared = declared_layer(model, "stem")
    candidates = [(declared, model.get_submodule(declared))] if declared is not None else model.named_modules()
    for name, module in candidates:
        if not isinstance(module, nn.Conv2d):
            continue
        if module.in_channels == in_chans:
            return model
        with torch.no_grad():
            if type(module) is nn.Conv2d:
                # torch types _ConvNd's sizes tuple[int, ...] and Conv2d's arguments pairs, which a Conv2d's sizes are
                new = nn.Conv2d(in_chans, module.out_channels,
                                module.kernel_size, module.stride,  # type: ignore[arg-type]  # torch: see above
                                module.padding, module.dilation,  # type: ignore[arg-type]  # torch: see above
                                module.groups, module.bias is not None, module.padding_mode)
                if module.bias is not None:
                    assert new.bias is not None  # made with a bias, as module has one
                    new.bias.copy_(module.bias)
            else:  # a subclass keeps its own forward (timm's Conv2dSame pads the TensorFlow way there)
                new = copy.deepcopy(module)
                new.in_channels = in_chans
            new.weight = nn.Parameter(folded_weight(module.weight, in_chans))
        model.set_submodule(name, new)
        return model
    raise ModelError(f"{type(model).__name__} has no convolution to adapt to {in_chans} input channels")


def headless(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode whose classification head is the identity: it outputs pooled features.

    Parameters
    ----------
    model : nn.Module
        Left as it is.

    Returns
    -------
    nn.Module
        Inputs (N, C, H, W) as `model` takes them to features (N, D), the head's input, D = feature_width(model).

    Raises
    ------
    ModelError
        When `model` has no fully-connected head.
    """
    backbone = copy.deepcopy(model)
    backbone.set_submodule(classifier_name(backbone), nn.Identity())
    return backbone.eval()
