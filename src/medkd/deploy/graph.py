"""The deployed computation, one module for PyTorch prediction and for the exported graph: uint8 images ->
calibrated class probabilities, and, where the run has an out-of-distribution guard, each image's guard score
from features of the same pass."""

from __future__ import annotations

import torch
from torch import nn

from medkd.evaluation import FeatureGuard, MahalanobisScore
from medkd.models import RunCard, WithFeatures, channel_statistics, normalise


class ProbabilityModel(nn.Module):
    """uint8 images (N, C, H, W) -> probabilities (N, classes): the model with its normalisation and its calibrated
    softmax (logits / the temperature fitted on validation). With a guard, forward returns (probabilities,
    scores (N,)): the backbone runs once, its pooled features go to the head and to the guard."""

    mean: torch.Tensor  # buffers registered in __init__
    std: torch.Tensor
    temperature: torch.Tensor

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], temperature: float = 1.0,
                 guard: MahalanobisScore | None = None, features: str = "penultimate",
                 example: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("mean", channel_statistics(mean))
        self.register_buffer("std", channel_statistics(std))
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.guard = guard
        # With a guard: the same computation as model(x), with the guard's features read out of the same pass.
        self.model = model if guard is None else WithFeatures(model, features, example)

    @classmethod
    def from_run(cls, model: nn.Module, card: RunCard, guard: FeatureGuard | None = None) -> ProbabilityModel:
        """The run's model with its card's normalisation, temperature and (when given) its guard."""
        size = card.preprocessing.size
        assert size is not None  # a run card records the resolved working size
        example = torch.zeros(1, card.in_chans, size, size)
        return cls(model, card.normalisation.mean, card.normalisation.std, card.temperature,
                   guard.score if guard else None, guard.features if guard else "penultimate", example).eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        inputs = normalise(images, self.mean, self.std)
        if self.guard is None:
            return (self.model(inputs) / self.temperature).softmax(dim=1)
        logits, features = self.model(inputs)
        return (logits / self.temperature).softmax(dim=1), self.guard(features)
