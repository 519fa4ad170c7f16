"""The deployed computation, one module for PyTorch prediction and for the exported graph: uint8 images ->
calibrated class probabilities, and, where the run has an out-of-distribution guard, each image's guard score
from the same pass's penultimate features."""

from __future__ import annotations

import torch
from torch import nn

from medkd.evaluation import MahalanobisScore, run_temperature
from medkd.models import channel_statistics, classifier_name, headless, normalise


class ProbabilityModel(nn.Module):
    """uint8 images (N, C, H, W) -> probabilities (N, classes): the model with its normalisation and its calibrated
    softmax (logits / the temperature fitted on validation). With a guard, forward returns (probabilities,
    scores (N,)): the backbone runs once, its pooled features go to the head and to the guard."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], temperature: float = 1.0,
                 guard: MahalanobisScore | None = None) -> None:
        super().__init__()
        self.register_buffer("mean", channel_statistics(mean))
        self.register_buffer("std", channel_statistics(std))
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.guard = guard
        if guard is None:
            self.model = model
        else:  # the same computation as model(x), split where the guard reads it
            self.backbone, self.head = headless(model), model.get_submodule(classifier_name(model))

    @classmethod
    def from_run(cls, model: nn.Module, sidecar: dict, guard: MahalanobisScore | None = None) -> ProbabilityModel:
        norm = sidecar["normalisation"]
        return cls(model, norm["mean"], norm["std"], run_temperature(sidecar), guard).eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        inputs = normalise(images, self.mean, self.std)
        if self.guard is None:
            return (self.model(inputs) / self.temperature).softmax(dim=1)
        features = self.backbone(inputs)
        return (self.head(features) / self.temperature).softmax(dim=1), self.guard(features)
