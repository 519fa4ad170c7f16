"""A classifier that also returns features for an out-of-distribution guard, in the same pass: the head's input,
or pooled feature maps read out of the network's graph (torch.fx feature extraction, as timm and torchvision do
it), so that PyTorch prediction and the exported ONNX graph compute the same thing."""

from __future__ import annotations

import copy

import torch
from timm.models import create_feature_extractor, get_graph_node_names  # torchvision's, knowing timm's layers
from torch import nn

from medkd.models.errors import ModelError
from medkd.models.kinds import FEATURE_KINDS
from medkd.models.surgery import classifier_name, headless


class WithFeatures(nn.Module):
    """images (N, C, H, W), normalised -> (logits (N, classes), features (N, D)) of `model` in one pass, features
    of `kind` (FEATURE_KINDS).

    Parameters
    ----------
    model : nn.Module
        A classifier with a fully-connected head (see `classifier_name`); pooled and blocks read a deep copy.
    kind : {"penultimate", "pooled", "blocks"}
        penultimate: the head's input, D = the head's in_features; pooled: the last feature map with a spatial
        extent, averaged over space, D = its channels; blocks: the last feature map at each spatial resolution,
        each averaged over space, concatenated, D = the sum of their channels.
    example : torch.Tensor of shape (N, C, H, W), float, optional
        An input of the model's shape, to find the feature maps of pooled and blocks (only its first image is
        run); not needed for penultimate.

    Raises
    ------
    ModelError
        For an unknown `kind`, a model without a fully-connected head (penultimate), no `example` (pooled,
        blocks), or a network that torch.fx cannot trace or that has no feature map with a spatial extent.
    """

    def __init__(self, model: nn.Module, kind: str, example: torch.Tensor | None = None) -> None:
        super().__init__()
        if kind not in FEATURE_KINDS:
            raise ModelError(f"unknown guard features {kind!r}: one of {', '.join(FEATURE_KINDS)}")
        self.kind = kind
        if kind == "penultimate":
            self.backbone, self.head = headless(model), model.get_submodule(classifier_name(model))
            return
        if example is None:
            raise ModelError(f"guard features {kind!r} need an example input to find the network's feature maps")
        self.maps = feature_maps(model, kind, example)
        _, eval_nodes = get_graph_node_names(model)
        self.extractor = create_feature_extractor(copy.deepcopy(model).eval(),
                                                  {**{node: node for node in self.maps}, eval_nodes[-1]: "logits"})

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and features of `kind` of one batch, in one pass.

        Parameters
        ----------
        images : torch.Tensor of shape (N, C, H, W), float
            Normalised inputs (see `normalise`).

        Returns
        -------
        logits : torch.Tensor of shape (N, classes)
            The model's output, in its compute dtype.
        features : torch.Tensor of shape (N, D)
            float32 for pooled and blocks (the maps are averaged in float32); for penultimate the head's input, in
            the model's compute dtype.
        """
        if self.kind == "penultimate":
            features = self.backbone(images)
            return self.head(features), features
        outputs = self.extractor(images)
        pooled = [outputs[node].float().mean(dim=(2, 3)) for node in self.maps]
        return outputs["logits"], torch.cat(pooled, dim=1)


def feature_maps(model: nn.Module, kind: str, example: torch.Tensor) -> list[str]:
    """Graph node names of `model`'s feature maps (N, C, H, W) with H * W > 1 that `kind` pools: the last one
    (pooled), or the last one at each spatial resolution in the order computed (blocks)."""
    try:
        _, eval_nodes = get_graph_node_names(model)
        probe = create_feature_extractor(copy.deepcopy(model).eval(), eval_nodes[1:])
    except Exception as err:  # FX cannot trace every network (data-dependent control flow)
        raise ModelError(f"guard features {kind!r} need a network that torch.fx can trace ({type(model).__name__} "
                         f"cannot: {err}); use guard features 'penultimate'") from err
    with torch.no_grad():
        outputs = probe(example[:1])
    spatial = [(node, tuple(out.shape[2:])) for node, out in outputs.items()
               if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[2] * out.shape[3] > 1]
    if not spatial:
        raise ModelError(f"{type(model).__name__} has no feature map with a spatial extent: use guard features "
                         "'penultimate'")
    if kind == "pooled":
        return [spatial[-1][0]]
    last_at: dict[tuple[int, ...], str] = {}
    for node, size in spatial:  # a resolution seen again later (an upsampling network) counts where it ends
        last_at.pop(size, None)
        last_at[size] = node
    return list(last_at.values())
