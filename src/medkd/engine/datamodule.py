"""Batches from in-memory tensors (the decode cache or cached features): per-image augmentation, class balancing,
and augmentation draws shared with other views of the same sample (a teacher's own resolution) or replayed."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, WeightedRandomSampler
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


@dataclass(frozen=True)
class ViewPlan:
    """How a training item's augmentation is drawn when other tensors must follow the same draw.

    paired: the first `paired` targets are images of the same samples at another preprocessing (e.g. a teacher's
        resolution); each gets the same random transform as the input (one seed per item; the transforms'
        parameters are relative to the image size, so the views match).
    replay: K > 0 gives every image K fixed augmentations, view k of image i drawn from seed (replay_seed, i, k);
        an item is one of them, picked at random, and every target holds one entry per view (N, K, ...): outputs
        computed once on those very views (e.g. a teacher's logits) are replayed to the student.
    """

    paired: int = 0
    replay: int = 0
    replay_seed: int = 0

    @property
    def seeded(self) -> bool:
        return bool(self.paired or self.replay)


def view_seed(replay_seed: int, index: int, view: int) -> int:
    """The seed of view `view` of image `index`: the same for every resolution and every run with `replay_seed`."""
    return int(np.random.SeedSequence([replay_seed, index, view]).generate_state(1)[0])


def augment_seeded(transform: v2.Transform, image: torch.Tensor, seed: int) -> torch.Tensor:
    """`transform(image)` with its random parameters drawn from `seed` (torchvision v2 draws from torch's global
    generator, forked here so that the caller's stream is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(image)


class CachedImages(Dataset):
    """(image uint8 (C, H, W), label, *per-sample targets such as cached teacher logits) from tensors in memory."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *targets: torch.Tensor,
                 transform: v2.Transform | None = None, views: ViewPlan = ViewPlan()) -> None:
        self.images, self.labels, self.targets, self.transform, self.views = images, labels, targets, transform, views

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        image, targets = self.images[index], [target[index] for target in self.targets]
        if self.views.replay:
            view = int(torch.randint(self.views.replay, ()))
            targets = [target[view] for target in targets]
            seed = view_seed(self.views.replay_seed, index, view)
        elif self.views.paired:
            seed = int(torch.randint(2**62, ()))  # from the worker's seeded stream: runs stay reproducible
        if self.transform is None:
            return (image, self.labels[index], *targets)
        if not self.views.seeded:
            return (self.transform(image), self.labels[index], *targets)
        paired = [augment_seeded(self.transform, view, seed) for view in targets[:self.views.paired]]
        return (augment_seeded(self.transform, image, seed), self.labels[index], *paired,
                *targets[self.views.paired:])


class WholeSplit(DistributedSampler):
    """Every index of a split, in order, in every process of a distributed run. Lightning leaves a loader with a
    DistributedSampler as it is, so validation is not sharded: AUC is not an average over shards, and a sharded
    split would also repeat samples to even the shards out. Each process scores all of it, so all agree on the
    metric that picks the best checkpoint (validation splits are small next to training)."""

    def __init__(self, dataset: Dataset) -> None:
        super().__init__(dataset, num_replicas=1, rank=0, shuffle=False)


def split_tensors(data: PreparedData, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8) and labels of one split as tensors."""
    images, labels = data.split(split)
    return torch.from_numpy(images), torch.from_numpy(labels)


class TensorDataModule(L.LightningDataModule):
    """train/val loaders over in-memory (inputs, labels, *targets) tensors: cached images or cached features."""

    def __init__(self, splits: dict[str, tuple[torch.Tensor, ...]], batch_size: int, *,
                 sampler: str = "shuffle", augment: AugmentConfig | None = None, num_workers: int = 0,
                 train_views: ViewPlan = ViewPlan()) -> None:
        super().__init__()
        self.splits, self.batch_size, self.sampler, self.num_workers = splits, batch_size, sampler, num_workers
        self.augmentation, self.train_views = build_augmentation(augment), train_views

    def _loader(self, split: str, train: bool) -> DataLoader:
        inputs, labels, *targets = self.splits[split]
        dataset = CachedImages(inputs, labels, *targets, transform=self.augmentation if train else None,
                               views=self.train_views if train else ViewPlan())
        sampler = None if train else WholeSplit(dataset)
        if train and self.sampler == "balanced":
            per_class = 1.0 / np.maximum(np.bincount(labels.numpy()), 1)
            sampler = WeightedRandomSampler(torch.as_tensor(per_class[labels.numpy()]), len(labels), replacement=True)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=train and sampler is None, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)
