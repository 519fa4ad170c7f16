"""Training augmentation from one AugmentConfig, done one of two ways: per image in the data loader (torchvision
transforms v2 on uint8 (C, H, W)), or per batch on the training device (kornia on uint8 (N, C, H, W), every image
with its own random draw), so that a GPU is not left waiting for CPU workers. Both draw the same transforms from
the same ranges."""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn
from torchvision.transforms import v2

from medkd.engine.config import AugmentConfig

PIXEL_MAX = 255  # uint8 images: the batched path computes in [0, 1] floats and rounds back to uint8


def build_augmentation(settings: AugmentConfig | None) -> v2.Transform | None:
    """Random transforms on uint8 (C, H, W) tensors; None when nothing is switched on.

    Parameters
    ----------
    settings : AugmentConfig or None
        None: no augmentation.

    Returns
    -------
    v2.Transform or None
        uint8 image (C, H, W) -> uint8 image (C, H, W): an affine warp, brightness and contrast, a horizontal flip,
        those switched on, in that order; random parameters from torch's global generator.
    """
    if settings is None or not settings.enabled:
        return None
    steps: list[v2.Transform] = []
    if settings.geometric:
        steps.append(v2.RandomAffine(settings.rotation_degrees, translate=(settings.translate, settings.translate),
                                     scale=settings.scale))
    if settings.brightness or settings.contrast:
        steps.append(IntensityJitter(brightness=settings.brightness, contrast=settings.contrast))
    if settings.horizontal_flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


class IntensityJitter(v2.ColorJitter):
    """torchvision's brightness and contrast jitter, for images of any channel count.

    Grey and RGB images go through ColorJitter itself. Other counts (C MRI modalities), which torchvision
    refuses, get the same factors drawn the same way and kornia's definition of contrast for them (the batched
    path's): blended with the mean over every channel and pixel, so that the modalities keep their relative
    intensities.
    """

    def transform(self, inpt, params):
        if not isinstance(inpt, torch.Tensor) or inpt.ndim < 3 or inpt.shape[-3] in (1, 3):
            return super().transform(inpt, params)
        output = inpt
        for fn_id in params["fn_idx"].tolist():
            if fn_id == 0 and params["brightness_factor"] is not None:
                output = _blend(output, torch.zeros_like(output, dtype=torch.float32), params["brightness_factor"])
            elif fn_id == 1 and params["contrast_factor"] is not None:
                mean = output.float().mean(dim=(-3, -2, -1), keepdim=True)
                output = _blend(output, mean, params["contrast_factor"])
        return output


def _blend(image: torch.Tensor, other: torch.Tensor, ratio: float) -> torch.Tensor:
    """ratio * image + (1 - ratio) * other, clamped to the pixel range and back in `image`'s type (torchvision's
    blend, as adjust_brightness and adjust_contrast use it)."""
    bound = PIXEL_MAX if not image.is_floating_point() else 1.0
    return (ratio * image + (1.0 - ratio) * other).clamp_(0, bound).to(image.dtype)


class BatchAugmentation(nn.Module):
    """uint8 (N, C, H, W) -> uint8 (N, C, H, W) on the images' own device, each image with its own parameters.

    The transforms of `build_augmentation` in kornia's batched form: an affine warp with torchvision's
    conventions (degrees, translate as a fraction of the side, scale; nearest-neighbour sampling and zero fill,
    as torchvision's default on uint8), then torchvision's brightness and contrast formulas (kornia's
    ColorJitter, which follows them), then the optional flip. Random parameters come from torch's global
    generator, so a seeded run draws the same ones again.

    Parameters
    ----------
    settings : AugmentConfig
        The transforms and their ranges, as for `build_augmentation`.
    """

    def __init__(self, settings: AugmentConfig) -> None:
        super().__init__()
        steps: list[K.AugmentationBase2D] = []
        if settings.geometric:
            steps.append(K.RandomAffine(settings.rotation_degrees, translate=(settings.translate, settings.translate),
                                        scale=settings.scale, resample="nearest", padding_mode="zeros", p=1.0))
        if settings.brightness or settings.contrast:
            steps.append(K.ColorJitter(brightness=settings.brightness, contrast=settings.contrast, p=1.0))
        if settings.horizontal_flip:
            steps.append(K.RandomHorizontalFlip(p=0.5))
        self.steps = K.AugmentationSequential(*steps)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Augment a batch, without gradients.

        Parameters
        ----------
        images : torch.Tensor of shape (N, C, H, W), uint8

        Returns
        -------
        torch.Tensor of shape (N, C, H, W), uint8
            On the images' device; computed in [0, 1] floats and rounded back.
        """
        augmented = self.steps(images.float() / PIXEL_MAX)
        return (augmented * PIXEL_MAX).round_().clamp_(0, PIXEL_MAX).to(torch.uint8)


def build_batch_augmentation(settings: AugmentConfig | None) -> BatchAugmentation | None:
    """The batched, on-device form of `build_augmentation(settings)`; None when nothing is switched on.

    Parameters
    ----------
    settings : AugmentConfig or None
        As for `build_augmentation`.

    Returns
    -------
    BatchAugmentation or None
        uint8 (N, C, H, W) -> uint8 (N, C, H, W).
    """
    if settings is None or not settings.enabled:
        return None
    return BatchAugmentation(settings)
