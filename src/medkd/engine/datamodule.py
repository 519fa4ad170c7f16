"""Batches from in-memory tensors (the decode cache or cached features): augmentation per image in the loader or
per batch on the training device, class balancing, and augmentation draws shared with other views of the same
sample (a teacher's own resolution) or replayed."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, WeightedRandomSampler
from torchvision.transforms import v2

from medkd.data import PreparedData
from medkd.engine.augment import build_augmentation, build_batch_augmentation
from medkd.engine.config import AugmentConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewPlan:
    """How a training item's augmentation is drawn when other tensors must follow the same draw.

    Parameters
    ----------
    paired : int, default 0
        The first `paired` targets are images of the same samples at another preprocessing (e.g. a teacher's
        resolution), uint8 (N, C', H', W'); each gets the same random transform as the input (one seed per item;
        the transforms' parameters are relative to the image size, so the views match).
    replay : int, default 0
        K > 0 gives every image K fixed augmentations, view k of image i drawn from seed (replay_seed, i, k);
        an item is one of them, picked at random, and every target holds one entry per view (N, K, ...): outputs
        computed once on those very views (e.g. a teacher's logits, (N, K, teachers, C)) are replayed to the
        student.
    replay_seed : int, default 0
        The seed the replayed views are drawn from (see `view_seed`).
    mixup : float, default 0.0
        With `replay`: > 0 mixes view k of image i with view k of a partner image, both drawn from
        (replay_seed, i, k) with the weight (see `view_partner`): replayed function matching. The item then also
        carries the partner's label and the weight of its own image (float32).
    """

    paired: int = 0
    replay: int = 0
    replay_seed: int = 0
    mixup: float = 0.0

    def __post_init__(self) -> None:
        if self.mixup and not self.replay:
            raise ValueError("ViewPlan.mixup mixes replayed views: give replay > 0 (online mixup mixes the batch)")

    @property
    def seeded(self) -> bool:
        """Whether each item's augmentation is drawn from a seed of its own (paired or replayed views)."""
        return bool(self.paired or self.replay)


def view_seed(replay_seed: int, index: int, view: int) -> int:
    """The seed of view `view` of image `index`: the same for every resolution and every run with `replay_seed`.

    Parameters
    ----------
    replay_seed : int
        The run's seed of replayed views.
    index : int
        The image's position in its split.
    view : int
        The view's number, 0 .. K - 1.

    Returns
    -------
    int
        In [0, 2**32), from NumPy's SeedSequence of (replay_seed, index, view).
    """
    return int(np.random.SeedSequence([replay_seed, index, view]).generate_state(1)[0])


def view_partner(replay_seed: int, index: int, view: int, images: int, concentration: float) -> tuple[int, float]:
    """The partner of view `view` of image `index` in replayed mixup, and the weight of the image's own pixels:
    the same at every resolution and in every run with `replay_seed`.

    Parameters
    ----------
    replay_seed, index, view : int
        As for `view_seed`.
    images : int
        The split's size N (>= 2): the partner is another image of it, uniformly.
    concentration : float
        The weight is drawn from Beta(concentration, concentration).

    Returns
    -------
    tuple of (int, float)
        The partner's index in [0, N) other than `index`, and the weight in [0, 1].
    """
    generator = np.random.default_rng(np.random.SeedSequence([replay_seed, index, view, images]))
    partner = int(generator.integers(images - 1))
    return partner + (partner >= index), float(generator.beta(concentration, concentration))


def mix_pixels(own: torch.Tensor, partner: torch.Tensor, weight: float | torch.Tensor) -> torch.Tensor:
    """weight x own + (1 - weight) x partner for uint8 images of one shape, rounded back to uint8 (a mixed view is
    an image like any other: every resolution and the cache see the same pixels).

    Parameters
    ----------
    own, partner : torch.Tensor of shape (..., C, H, W), uint8
    weight : float, or torch.Tensor broadcastable to the images (e.g. (N, 1, 1, 1))

    Returns
    -------
    torch.Tensor of the images' shape, uint8
    """
    return torch.lerp(partner.float(), own.float(), weight).round_().to(torch.uint8)


def augment_seeded(transform: v2.Transform, image: torch.Tensor, seed: int) -> torch.Tensor:
    """`transform(image)` with its random parameters drawn from `seed` (torchvision v2 draws from torch's global
    generator, forked here so that the caller's stream is untouched).

    Parameters
    ----------
    transform : v2.Transform
        E.g. `build_augmentation`'s.
    image : torch.Tensor of shape (C, H, W), uint8
        One image, at any resolution.
    seed : int

    Returns
    -------
    torch.Tensor
        What `transform` returns: for medkd's augmentation uint8 (C, H, W), as the input.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(image)


def augmented_view(transform: v2.Transform, images: np.ndarray | torch.Tensor, replay_seed: int,
                   view: int, mixup: float = 0.0) -> torch.Tensor:
    """View `view` of every uint8 image (N, C, H, W): image i drawn from seed view_seed(replay_seed, i, view), so
    it is the same view at every resolution and in every run with `replay_seed`; with `mixup` > 0 mixed with its
    partner's view `view` (see `view_partner`), as the loader of a ViewPlan with that mixup gives it.

    Parameters
    ----------
    transform : v2.Transform
        The training augmentation (`build_augmentation`).
    images : np.ndarray or torch.Tensor of shape (N, C, H, W), uint8
        A whole split, in its order.
    replay_seed : int
    view : int
        The view's number.
    mixup : float, default 0.0
        The Beta concentration of replayed mixup; 0: unmixed.

    Returns
    -------
    torch.Tensor of shape (N, C, H, W), uint8
        On the CPU for a NumPy array, else on the images' device.
    """
    pixels = torch.as_tensor(np.asarray(images))
    views = torch.stack([augment_seeded(transform, image, view_seed(replay_seed, i, view))
                         for i, image in enumerate(pixels)])
    if not mixup:
        return views
    partners, weights = zip(*(view_partner(replay_seed, i, view, len(views), mixup) for i in range(len(views))))
    weight = torch.tensor(weights, dtype=torch.float32, device=views.device).view(-1, *[1] * (views.ndim - 1))
    return mix_pixels(views, views[list(partners)], weight)


class CachedImages(Dataset):
    """(image uint8 (C, H, W), label, *per-sample targets such as cached teacher logits) from tensors in memory;
    with replayed mixup (ViewPlan.mixup) followed by the partner's label and the image's weight (float32 ())."""

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
            if self.views.mixup:
                return self.mixed_view(index, view, targets)
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

    def mixed_view(self, index: int, view: int, targets: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Replayed mixup's item: view `view` of image `index` mixed with its partner's (as `augmented_view`)."""
        assert self.transform is not None  # replayed views are augmented views
        seed = self.views.replay_seed
        partner, weight = view_partner(seed, index, view, len(self), self.views.mixup)
        own = augment_seeded(self.transform, self.images[index], view_seed(seed, index, view))
        other = augment_seeded(self.transform, self.images[partner], view_seed(seed, partner, view))
        return (mix_pixels(own, other, weight), self.labels[index], *targets, self.labels[partner],
                torch.tensor(weight, dtype=torch.float32))


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


class SampleIndices(Dataset):
    """0 .. n-1: the train loader of images kept on the device yields sample indices; the batch is gathered there."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


class TensorDataModule(L.LightningDataModule):
    """train/val loaders over in-memory (inputs, labels, *targets) tensors: cached images or cached features.

    Batches are (inputs (B, ...), labels (B,), *targets (B, ...)), the train split's augmented (images only) and
    shuffled or class-balanced; the validation split is read whole and in order by every process (WholeSplit).

    Parameters
    ----------
    splits : dict of str to tuple of torch.Tensor
        "train" and "val": (inputs, labels, *targets), each of first dimension N: inputs uint8 images
        (N, C, H, W) or cached features (N, D), labels int64 (N,), targets per-sample tensors such as cached
        teacher logits (N, teachers, C) (see `train_views` for the train split's).
    batch_size : int
    sampler : {"shuffle", "balanced"}, default "shuffle"
        balanced: training classes drawn equally often (with replacement).
    augment : AugmentConfig, optional
        The training images' augmentation; None for none (validation is never augmented).
    num_workers : int, default 0
        Processes of the loaders that build batches per item.
    train_views : ViewPlan, default ViewPlan()
        How the train split's targets follow its augmentation.
    images_on_device : bool, default False
        The train split is copied once to the training device; its loader yields sample indices (shuffled,
        balanced or sharded over processes as usual), and each batch is gathered there and augmented in one
        batched call (engine.augment). Augmentation that other views must follow draw for draw (`train_views`
        seeded) stays per image in the loader: this is then ignored (and logged).
    """

    def __init__(self, splits: dict[str, tuple[torch.Tensor, ...]], batch_size: int, *,
                 sampler: str = "shuffle", augment: AugmentConfig | None = None, num_workers: int = 0,
                 train_views: ViewPlan = ViewPlan(), images_on_device: bool = False) -> None:
        super().__init__()
        self.splits, self.batch_size, self.sampler, self.num_workers = splits, batch_size, sampler, num_workers
        self.augmentation, self.train_views = build_augmentation(augment), train_views
        self.images_on_device = images_on_device and not train_views.seeded
        if images_on_device and train_views.seeded:
            log.info("training images stay in the data loader: their augmentation is drawn per image so that "
                     "other views of each sample (a teacher's resolution, replayed views) follow it")
        self.batch_augmentation = build_batch_augmentation(augment) if self.images_on_device else None
        self._train_on: tuple[torch.device, tuple[torch.Tensor, ...]] | None = None  # the train split, moved once

    def _loader(self, split: str, train: bool) -> DataLoader:
        inputs, labels, *targets = self.splits[split]
        sampler: Sampler[int] | None = None
        if train and self.sampler == "balanced":
            per_class = 1.0 / np.maximum(np.bincount(labels.numpy()), 1)
            weights = torch.as_tensor(per_class[labels.numpy()])
            # torch types the weights Sequence[float]; it takes a tensor as well (it calls torch.as_tensor on them)
            sampler = WeightedRandomSampler(weights, len(labels), replacement=True)  # type: ignore[arg-type]
        if train and self.images_on_device:  # indices only: nothing for loader processes to do
            return DataLoader(SampleIndices(len(labels)), batch_size=self.batch_size, shuffle=sampler is None,
                              sampler=sampler)
        dataset = CachedImages(inputs, labels, *targets, transform=self.augmentation if train else None,
                               views=self.train_views if train else ViewPlan())
        if not train:
            sampler = WholeSplit(dataset)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=train and sampler is None, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """The train split's loader: augmented items, or sample indices (B,) with `images_on_device`."""
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        """The validation split's loader: every item, in order, un-augmented, in every process."""
        return self._loader("val", train=False)

    def train_split_on(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The train split's (inputs, labels, *targets) on `device`, copied there at the first call.

        Parameters
        ----------
        device : torch.device
            The training device; another one than the last call's copies the split again.

        Returns
        -------
        tuple of torch.Tensor
            The tensors of splits["train"], each of first dimension N, on `device`.
        """
        if self._train_on is None or self._train_on[0] != device:
            self._train_on = (device, tuple(t.to(device) for t in self.splits["train"]))
            log.info("train split (%d samples) kept on %s: batches are gathered%s there", len(self.splits["train"][1]),
                     device, " and augmented" if self.batch_augmentation is not None else "")
        return self._train_on[1]

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """Lightning's hook: a batch the loader built is moved to `device` as usual; a train batch of sample
        indices (B,) becomes (inputs, labels, *targets) gathered on `device` from `train_split_on`, the images
        augmented there, when augmentation is on, in one batched call (uint8 (B, C, H, W) in and out)."""
        if not isinstance(batch, torch.Tensor):  # a batch the loader built (validation, or images in the loader)
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        # sample indices (B,) of a train batch: gathered and augmented where the model is
        inputs, labels, *targets = (t[batch.to(device)] for t in self.train_split_on(device))
        if self.batch_augmentation is not None:
            inputs = self.batch_augmentation(inputs)
        return (inputs, labels, *targets)
