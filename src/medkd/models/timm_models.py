"""timm models (`timm/NAME`), when timm is installed: timm builds the head and input stem itself."""

from __future__ import annotations

from torch import nn

from medkd.models.errors import ModelError


def build(name: str, num_classes: int, in_chans: int, imagenet: bool, **kwargs) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ModelError(f"timm/{name} needs timm: pip install timm") from None
    if name not in timm.list_models(pretrained=imagenet) and name not in timm.list_models():
        raise ModelError(f"timm has no model '{name}' (timm.list_models() lists them)")
    try:
        return timm.create_model(name, pretrained=imagenet, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except OSError as err:
        raise ModelError(
            f"could not fetch pretrained weights for timm/{name} ({err}); offline, set weights to a local "
            "checkpoint path or weights: none"
        ) from None
