"""Grad-CAM heatmaps (pytorch-grad-cam) over the input image, for any CNN of the model factory."""

from __future__ import annotations

import numpy as np
from PIL import Image
from torch import nn

from medkd.models import ModelError, normalise


def default_target_layer(model: nn.Module) -> nn.Module:
    """The last convolution: the deepest feature map that still has a spatial layout."""
    convolutions = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    if not convolutions:
        raise ModelError(f"{type(model).__name__} has no Conv2d layer for Grad-CAM to explain")
    return convolutions[-1]


def grad_cam(model: nn.Module, images: np.ndarray, normalisation: dict, target_class: int) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] of `target_class` for uint8 images (N, C, H, W)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    inputs = normalise(images, normalisation["mean"], normalisation["std"])
    with GradCAM(model=model.eval(), target_layers=[default_target_layer(model)]) as cam:
        return cam(input_tensor=inputs, targets=[ClassifierOutputTarget(target_class)] * len(images))


def overlay(image: Image.Image, heat: np.ndarray, opacity: float = 0.45) -> Image.Image:
    """The heatmap (jet colours) blended over the image, at the image's own size."""
    from matplotlib import colormaps

    heat_image = Image.fromarray((heat * 255).astype(np.uint8)).resize(image.size, Image.Resampling.BILINEAR)
    colours = colormaps["jet"](np.asarray(heat_image) / 255.0)[..., :3]
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    blended = (1 - opacity) * base + opacity * colours
    return Image.fromarray((blended.clip(0, 1) * 255).astype(np.uint8))
