"""Two random views per unlabelled image, from the decode-once cache (uint8 tensors, torchvision transforms v2)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from medkd.pretrain.config import ViewConfig


def view_transform(settings: ViewConfig, size: int, mean: list[float], std: list[float]) -> v2.Transform:
    """uint8 image (C, H, W) -> one normalised float view of the same size."""
    kernel = max(3, (size // 20) | 1)  # odd, about 5 % of the side
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=settings.crop_scale, antialias=True),
        v2.RandomRotation(settings.rotation_degrees),
        v2.ColorJitter(brightness=settings.brightness, contrast=settings.contrast),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=settings.blur_sigma)], p=settings.blur_probability),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])


class TwoViews(Dataset):
    """Pairs of independent random views of each image; labels are never looked at."""

    def __init__(self, images: np.ndarray, transform: v2.Transform) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.array(self.images[index]))
        return self.transform(image), self.transform(image)
