"""torchvision classifiers by name, with their own ImageNet weights API (standard cache, hash-checked download)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.error import URLError

import torch
import torchvision
from torch import nn

from medkd.models.errors import ModelError
from medkd.models.registry import adapt_first_conv, replace_classifier


def build(name: str, num_classes: int, in_chans: int, imagenet: bool, **kwargs) -> nn.Module:
    weights = torchvision.models.get_model_weights(name).DEFAULT if imagenet else None
    try:
        model = torchvision.models.get_model(name, weights=weights, **kwargs)
    except (URLError, OSError, RuntimeError) as err:
        if weights is None:
            raise
        target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        raise ModelError(
            f"could not fetch ImageNet weights for {name} from {weights.url} ({err}). Offline: download that file "
            f"elsewhere and place it at {target} (torchvision's cache; $TORCH_HOME moves it), or set weights to a "
            "local checkpoint path, or weights: none"
        ) from None
    return adapt_first_conv(replace_classifier(model, num_classes), in_chans)
