"""One factory, `create_model`, over a registry of medkd's own models, torchvision's classifiers and timm's.

Each registered model may carry a `PretrainedConfig` (where its ImageNet weights come from, its normalisation
and native resolution); torchvision and `timm/NAME` models get theirs from those libraries.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from torch import nn

from medkd.models import timm_models, torchvision_models
from medkd.models.errors import ModelError
from medkd.models.pretrained import IMAGENET, PretrainedConfig, TorchvisionHub
from medkd.models.surgery import adapt_first_conv, replace_classifier
from medkd.models.weights import load_checkpoint

log = logging.getLogger(__name__)


IMAGENET_TAG = "imagenet"  # the weight set every pretrained architecture has; others are registered by tag
TAG = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")  # a weight tag: a bare word (a checkpoint path is anything else)
NOT_TAGS = ("none",)


@dataclass(frozen=True)
class ModelEntry:
    """A model as the registry knows it: how to build it with random weights, its weight sets by tag, and where its
    input stem and classification head are (None: timm's pretrained config says, else the first convolution and
    the last fully-connected layer).

    Parameters
    ----------
    build : callable
        build(num_classes, in_chans, **kwargs) -> nn.Module with random weights.
    weights : mapping of str to PretrainedConfig
        Its weight sets by tag (IMAGENET_TAG: its ImageNet weights).
    stem : str, optional
        Qualified name of its first convolution.
    classifier : str, optional
        Qualified name of its classification layer.
    """

    build: Callable[..., nn.Module]  # build(num_classes, in_chans, **kwargs) with random weights
    weights: Mapping[str, PretrainedConfig] = field(default_factory=dict)
    stem: str | None = None
    classifier: str | None = None

    @property
    def pretrained(self) -> PretrainedConfig | None:
        """Its ImageNet weights (and their normalisation), None when it has none."""
        return self.weights.get(IMAGENET_TAG)


_REGISTERED: dict[str, ModelEntry] = {}
_WEIGHT_SETS: dict[str, dict[str, PretrainedConfig]] = {}  # architecture -> tag -> weights, for every architecture


def register_model(name: str, pretrained: PretrainedConfig | None = None, *, stem: str | None = None,
                   classifier: str | None = None):
    """Decorator: register `build(num_classes, in_chans, **kwargs) -> nn.Module` as `name`, with where its ImageNet
    weights come from (None: it has none) and the qualified names of its first convolution (`stem`) and
    classification layer (`classifier`). A later registration of the same name wins (with a warning).

    Parameters
    ----------
    name : str
        The name create_model and recipes know it by.
    pretrained : PretrainedConfig, optional
        Its ImageNet weights, registered as weight set IMAGENET_TAG.
    stem, classifier : str, optional
        Qualified module names of its first convolution and of its classification layer; None: timm's pretrained
        config says, else the first convolution and the last fully-connected layer.

    Returns
    -------
    callable
        The decorator; it registers `build` and returns it unchanged.
    """

    def decorate(build: Callable[..., nn.Module]):
        if name in _REGISTERED:
            log.warning("model %s registered again: the later registration wins", name)
        _REGISTERED[name] = ModelEntry(build, stem=stem, classifier=classifier)
        if pretrained is not None:
            register_weights(name, IMAGENET_TAG, pretrained)
        return build

    return decorate


def register_weights(architecture: str, tag: str, weights: PretrainedConfig) -> None:
    """Register weight set `tag` of `architecture` (any name create_model takes): `weights: TAG` in a recipe then
    loads it. A new set (e.g. RadImageNet, or an institution's self-supervised checkpoint) is one PretrainedConfig
    with its providers, normalisation and native resolution, and this one call. A later registration of the same
    tag wins (with a warning).

    Parameters
    ----------
    architecture : str
        A model name: registered, a torchvision classifier or timm/NAME (not checked here).
    tag : str
        A bare word: a letter, then letters, digits, _ and -; not 'none'.
    weights : PretrainedConfig
        The set's providers, normalisation and native resolution.

    Raises
    ------
    ModelError
        When `tag` is not such a word, or is 'none'.
    """
    if not TAG.fullmatch(tag) or tag in NOT_TAGS:
        raise ModelError(f"weight tag {tag!r}: use letters, digits, _ and - (not {' or '.join(NOT_TAGS)})")
    if tag in _WEIGHT_SETS.get(architecture, {}):
        log.warning("weights %s of %s registered again: the later registration wins", tag, architecture)
    _WEIGHT_SETS.setdefault(architecture, {})[tag] = weights


def _torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _timm_names() -> list[str]:
    try:
        import timm
    except ImportError:
        return []
    return timm.list_models()


def list_models() -> list[str]:
    """Every name `create_model` accepts: registered models, torchvision classifiers, and `timm/NAME`.

    Returns
    -------
    list of str
        The registered names sorted, then torchvision's sorted, then timm's in timm's order (none without timm).
    """
    return sorted(_REGISTERED) + _torchvision_names() + [f"timm/{n}" for n in _timm_names()]


def model_entry(name: str) -> ModelEntry:
    """How to build model `name`, its weight sets by tag, its stem and head.

    Parameters
    ----------
    name : str
        A registered model, a torchvision classifier, or timm/NAME.

    Returns
    -------
    ModelEntry
        With the weight sets registered for `name` (register_weights) added to its own; a registered tag replaces
        its own set of that tag.

    Raises
    ------
    ModelError
        For an unknown model; for timm/NAME, also when timm is not installed or has no model NAME.
    """
    if name in _REGISTERED:
        entry = _REGISTERED[name]
    elif name.startswith("timm/"):
        timm_name = name.removeprefix("timm/")
        entry = ModelEntry(timm_models.builder(timm_name), {IMAGENET_TAG: timm_models.pretrained_config(timm_name)})
    elif name in _torchvision_names():
        entry = ModelEntry(torchvision_models.builder(name),
                           {IMAGENET_TAG: PretrainedConfig(providers=(TorchvisionHub(name),))})
    else:
        raise unknown_model(name)
    return replace(entry, weights={**entry.weights, **_WEIGHT_SETS.get(name, {})})


def unknown_model(name: str) -> ModelError:
    return ModelError(
        f"unknown model '{name}'; registered models are {sorted(_REGISTERED)}, any torchvision classifier "
        "(e.g. resnet18, resnet50, densenet121, efficientnet_b0, mobilenet_v3_small), or timm/NAME"
    )


def weight_tags(name: str) -> list[str]:
    """The weight sets model `name` can start from by tag (`weights: TAG`), e.g. ['imagenet'].

    Parameters
    ----------
    name : str
        A model name (see `model_entry`).

    Returns
    -------
    list of str
        Sorted tags of the sets that have weight providers (statistics-only sets are left out).

    Raises
    ------
    ModelError
        For an unknown model (see `model_entry`).
    """
    return sorted(tag for tag, config in model_entry(name).weights.items() if config.providers)


def check_weights(name: str, weights: str) -> None:
    """Raise ModelError unless `weights` is none, a weight tag of `name` with weights, or a path (not a bare word)."""
    tags = weight_tags(name)
    if weights not in ("none", *tags) and TAG.fullmatch(weights):
        sets = f"its sets: {', '.join(tags)}" if tags else "it has none, as medkd's own models"
        raise ModelError(f"weights {weights!r}: {name} has no such weight set ({sets}); use none, one of its sets, or "
                         "a checkpoint path")


def check_model_settings(name: str, weights: str, model_args: Mapping[str, object]) -> None:
    """Raise ModelError, saying what is allowed, unless `name` is a model create_model builds, `weights` is none,
    one of its weight tags or a checkpoint path (a bare word that is no tag is taken for a misspelt one;
    `stage:NAME` stands for another stage's result), and its builder takes `model_args`.

    Parameters
    ----------
    name : str
        A model name (see `model_entry`).
    weights : str
        none, a weight tag, a checkpoint path, or stage:NAME (not checked).
    model_args : mapping of str to object
        Extra keyword arguments of the builder; checked by name only, and not at all for a builder that takes
        **kwargs.

    Raises
    ------
    ModelError
        When any of the three is not allowed; the message says what is.
    """
    entry = model_entry(name)
    if not weights.startswith("stage:"):
        check_weights(name, weights)
    accepted = inspect.signature(entry.build).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        own = sorted(set(accepted) - {"num_classes", "in_chans"})
        unknown = sorted(set(model_args) - set(own))
        if unknown:
            raise ModelError(f"model_args {unknown}: {name} takes {own or 'none'}")


def pretrained_config(name: str, tag: str = IMAGENET_TAG) -> PretrainedConfig:
    """Model `name`'s weight set `tag` (its providers, normalisation, native resolution); ImageNet statistics and no
    weights for a model that has no such set.

    Parameters
    ----------
    name : str
        A model name (see `model_entry`).
    tag : str, default IMAGENET_TAG

    Returns
    -------
    PretrainedConfig

    Raises
    ------
    ModelError
        For an unknown model (see `model_entry`).
    """
    return model_entry(name).weights.get(tag) or IMAGENET


def normalisation(in_chans: int, architecture: str | None = None,
                  weights: str | None = None) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of inputs scaled to [0, 1] for `architecture` starting from `weights` (a weight
    set's own statistics; its ImageNet weights' for random or file weights; ImageNet's when it has none or none is
    named), averaged over RGB for grey input.

    Parameters
    ----------
    in_chans : int
        The model's input channels.
    architecture : str, optional
        A model name (see `model_entry`); None: ImageNet's statistics.
    weights : str, optional
        What the model starts from: none, a weight tag or a checkpoint path.

    Returns
    -------
    mean : list of float of length in_chans
    std : list of float of length in_chans

    Raises
    ------
    ModelError
        For an unknown architecture (see `model_entry`).
    """
    tag = (weights if architecture and weights is not None and weights in model_entry(architecture).weights
           else IMAGENET_TAG)
    config = pretrained_config(architecture, tag) if architecture else IMAGENET
    return config.normalisation(in_chans)


def create_model(name: str, num_classes: int, in_chans: int = 3, weights: str | None = None, **kwargs) -> nn.Module:
    """Build model `name` with a `num_classes` head for `in_chans`-channel input.

    Parameters
    ----------
    name : str
        A registered model, a torchvision classifier, or timm/NAME (see `list_models`).
    num_classes : int
        Outputs of the head.
    in_chans : int, default 3
        Input channels; pretrained RGB weights have their first convolution folded onto them.
    weights : str, optional
        None/"none" (random init), a weight tag of the architecture (e.g. "imagenet": from the first of its
        providers available here; `model.medkd_weights_source` says which), or a checkpoint path (safetensors, or
        .pth/.pt loaded with weights_only=True).
    **kwargs
        Passed to the model's builder (a recipe's model_args).

    Returns
    -------
    nn.Module
        In train mode, on the CPU: float inputs (N, in_chans, H, W), normalised (see `normalisation`), to logits
        (N, num_classes).

    Raises
    ------
    ModelError
        For an unknown model, weights that are neither none, one of its tags nor a path, weights that cannot be
        found or do not fit the model, or a model without a fully-connected head or a convolution to adapt.
    """
    entry = model_entry(name)
    if weights not in (None, "none"):
        check_weights(name, weights)
    if weights in (None, "none") or weights not in entry.weights:
        model = with_layer_names(entry.build(num_classes=num_classes, in_chans=in_chans, **kwargs), entry)
        if weights not in (None, "none"):
            load_checkpoint(model, weights)
        return model
    config = entry.weights[weights]
    model = with_layer_names(entry.build(num_classes=config.num_classes, in_chans=3, **kwargs), entry)
    source = config.load_into(model, name, weights)
    if num_classes != config.num_classes:
        model = replace_classifier(model, num_classes)
    model = adapt_first_conv(model, in_chans)
    # like timm's model.pretrained_cfg: what the run card records
    model.medkd_weights_source = source  # type: ignore[assignment]  # torch types Module attributes tensor/module
    return model


def with_layer_names(model: nn.Module, entry: ModelEntry) -> nn.Module:
    """`model` carrying its entry's declared stem and head names (surgery reads them before guessing)."""
    if entry.stem or entry.classifier:
        layers = {"stem": entry.stem, "classifier": entry.classifier}
        model.medkd_layers = layers  # type: ignore[assignment]  # torch types Module attributes tensor/module
    return model


# medkd's own models register themselves on import, as timm's model modules do; importing them here makes every
# lookup see them, whichever public name was used first.
from medkd.models import cnn, efficientnet_lite  # noqa: E402, F401
