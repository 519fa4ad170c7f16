"""Batches from in-memory tensors (the decode cache or cached features): per-image augmentation, class balancing."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from torchvision.transforms import v2

from medkd.data import PreparedData
from medkd.engine.config import AugmentConfig


def build_augmentation(settings: AugmentConfig | None) -> v2.Transform | None:
    """Random transforms on uint8 (C, H, W) tensors; None when nothing is switched on."""
    if settings is None:
        return None
    steps: list[v2.Transform] = []
    if settings.rotation_degrees or settings.translate or settings.scale != (1.0, 1.0):
        steps.append(v2.RandomAffine(settings.rotation_degrees, translate=(settings.translate, settings.translate),
                                     scale=settings.scale))
    if settings.brightness or settings.contrast:
        steps.append(v2.ColorJitter(brightness=settings.brightness, contrast=settings.contrast))
    if settings.horizontal_flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps) if steps else None


class CachedImages(Dataset):
    """(image uint8 (C, H, W), label, *per-sample targets such as cached teacher logits) from tensors in memory."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *targets: torch.Tensor,
                 transform: v2.Transform | None = None) -> None:
        self.images, self.labels, self.targets, self.transform = images, labels, targets, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        image = self.images[index]
        image = self.transform(image) if self.transform else image
        return (image, self.labels[index], *(target[index] for target in self.targets))


def split_tensors(data: PreparedData, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8) and labels of one split as tensors."""
    images, labels = data.split(split)
    return torch.from_numpy(images), torch.from_numpy(labels)


class TensorDataModule(L.LightningDataModule):
    """train/val loaders over in-memory (inputs, labels, *targets) tensors: cached images or cached features."""

    def __init__(self, splits: dict[str, tuple[torch.Tensor, ...]], batch_size: int, *,
                 sampler: str = "shuffle", augment: AugmentConfig | None = None, num_workers: int = 0) -> None:
        super().__init__()
        self.splits, self.batch_size, self.sampler, self.num_workers = splits, batch_size, sampler, num_workers
        self.augmentation = build_augmentation(augment)

    def _loader(self, split: str, train: bool) -> DataLoader:
        inputs, labels, *targets = self.splits[split]
        dataset = CachedImages(inputs, labels, *targets, transform=self.augmentation if train else None)
        sampler = None
        if train and self.sampler == "balanced":
            per_class = 1.0 / np.maximum(np.bincount(labels.numpy()), 1)
            sampler = WeightedRandomSampler(torch.as_tensor(per_class[labels.numpy()]), len(labels), replacement=True)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=train and sampler is None, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)
