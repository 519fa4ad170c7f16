"""torchvision classifiers by name; their ImageNet weights come through torchvision's weights API
(`pretrained.TorchvisionHub`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torchvision
from torch import nn

from medkd.models.surgery import adapt_first_conv, classifier_name, replace_classifier


def build(name: str, num_classes: int, in_chans: int, **kwargs) -> nn.Module:
    """torchvision's `name` with random weights, its head for `num_classes` and its stem for `in_chans`."""
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    if num_classes == model.get_submodule(classifier_name(model)).out_features and in_chans == 3:
        return model
    return adapt_first_conv(replace_classifier(model, num_classes), in_chans)


def builder(name: str) -> Callable[..., nn.Module]:
    return partial(build, name)
