"""Teachers: trained run folders, frozen, in eval mode, one or several (an ensemble)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from medkd.errors import MedkdError
from medkd.models import load_model


class DistillationError(MedkdError):
    """A teacher that cannot teach this student on this data; the message says what differs."""


class FrozenTeacher(nn.Module):
    """Trained models that never train: no gradients, always in eval mode (batch-norm statistics stay fixed).
    Inputs come normalised as the student's; `renormalise[i]` = (scale, shift), per channel, turns them into
    what teacher i was trained on (x * scale + shift; identity when both normalise alike).
    Its output is the stacked logits (N, teachers, C)."""

    def __init__(self, models: list[nn.Module], renormalise: list[tuple[list[float], list[float]]] | None = None) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)
        for index, (scale, shift) in enumerate(renormalise or []):
            self.register_buffer(f"scale{index}", torch.tensor(scale).view(1, -1, 1, 1), persistent=False)
            self.register_buffer(f"shift{index}", torch.tensor(shift).view(1, -1, 1, 1), persistent=False)
        self.renormalises = renormalise is not None
        self.requires_grad_(False)
        self.eval()

    def teacher_inputs(self, index: int, inputs: torch.Tensor) -> torch.Tensor:
        """The student-normalised `inputs` as teacher `index` expects them."""
        if not self.renormalises:
            return inputs
        return inputs * getattr(self, f"scale{index}") + getattr(self, f"shift{index}")

    def train(self, mode: bool = True) -> FrozenTeacher:
        return super().train(False)

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack([model(self.teacher_inputs(i, inputs)).float() for i, model in enumerate(self.models)], dim=1)


def load_teachers(folders: list[str], *, classes: list[str], in_chans: int, preprocessing: dict,
                  normalisation: dict) -> tuple[FrozenTeacher, list[dict]]:
    """The teachers of run folders `folders`, checked to share the student's classes and inputs; a teacher
    trained with another normalisation (e.g. EfficientNet-Lite's [-1, 1]) gets the student's inputs converted."""
    models, sidecars, renormalise = [], [], []
    for folder in folders:
        model, sidecar = load_model(Path(folder))
        expected = {"classes": classes, "in_chans": in_chans, "preprocessing": preprocessing}
        for key, value in expected.items():
            if sidecar[key] != value:
                raise DistillationError(
                    f"teacher {folder} was trained with {key} = {sidecar[key]!r}, the student uses {value!r}: "
                    "train the student on the same data and preprocessing as its teacher")
        renormalise.append(conversion(normalisation, sidecar["normalisation"]))
        models.append(model.to(memory_format=torch.channels_last))
        sidecars.append(sidecar)
    return FrozenTeacher(models, renormalise), sidecars


def conversion(student: dict, teacher: dict) -> tuple[list[float], list[float]]:
    """(scale, shift) per channel with x_teacher = x_student * scale + shift, from the two normalisations
    (x = (pixel - mean) / std on pixels scaled to [0, 1])."""
    scale = [s_std / t_std for s_std, t_std in zip(student["std"], teacher["std"])]
    shift = [(s_mean - t_mean) / t_std for s_mean, t_mean, t_std in zip(student["mean"], teacher["mean"], teacher["std"])]
    return scale, shift
