"""Teachers: trained run folders, frozen, in eval mode, one or several (an ensemble)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from medkd.models import load_model


class DistillationError(Exception):
    """A teacher that cannot teach this student on this data; the message says what differs."""


class FrozenTeacher(nn.Module):
    """Trained models that never train: no gradients, always in eval mode (batch-norm statistics stay fixed).
    Its output is the stacked logits (N, teachers, C)."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenTeacher:
        return super().train(False)

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack([model(inputs).float() for model in self.models], dim=1)


def load_teachers(folders: list[str], *, classes: list[str], in_chans: int, preprocessing: dict,
                  normalisation: dict) -> tuple[FrozenTeacher, list[dict]]:
    """The teachers of run folders `folders`, checked to share the student's classes and inputs."""
    models, sidecars = [], []
    for folder in folders:
        model, sidecar = load_model(Path(folder))
        expected = {"classes": classes, "in_chans": in_chans, "preprocessing": preprocessing}
        for key, value in expected.items():
            if sidecar[key] != value:
                raise DistillationError(
                    f"teacher {folder} was trained with {key} = {sidecar[key]!r}, the student uses {value!r}: "
                    "train the student on the same data and preprocessing as its teacher")
        if sidecar["normalisation"]["mean"] != normalisation["mean"] or sidecar["normalisation"]["std"] != normalisation["std"]:
            raise DistillationError(f"teacher {folder} normalises its inputs differently from the student")
        models.append(model.to(memory_format=torch.channels_last))
        sidecars.append(sidecar)
    return FrozenTeacher(models), sidecars
