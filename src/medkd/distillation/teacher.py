"""Teachers: trained run folders, frozen, in eval mode, one or several (an ensemble), each seeing its own inputs."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from medkd.data import Preprocessing
from medkd.errors import MedkdError
from medkd.models import Normalisation, RunCard, channel_statistics, load_model, normalise


class DistillationError(MedkdError):
    """A teacher that cannot teach this student on this data; the message says what differs."""


class FrozenTeacher(nn.Module):
    """Trained models that never train: no gradients, always in eval mode (batch-norm statistics stay fixed).
    Its output is the stacked logits (N, teachers, C).

    A teacher trained with the student's preprocessing reads the student's normalised batch; `renormalise[i]` =
    (scale, shift) per channel turns it into what teacher i was trained on (x * scale + shift; identity when both
    normalise alike). A teacher trained with another preprocessing (cross-resolution) reads its own view of the
    same augmented samples, uint8 (N, C', H', W'): `own_view[i]` is its position among the views, and
    `own_normalisation[i]` its (mean, std).

    Parameters
    ----------
    models : list of nn.Module
        The teachers, each mapping its normalised inputs to logits (N, C).
    renormalise : list of (scale, shift), optional
        Per teacher, lists of float of length C; None: every teacher reads the student's batch as it is.
    own_view : list of int or None, optional
        Per teacher, its view's position in `views` (None: it reads the student's batch); default all None.
    own_normalisation : list of (mean, std) or None, optional
        Per teacher, the normalisation of its own view (lists of float of length C'); None for the others.
    """

    def __init__(self, models: list[nn.Module], renormalise: list[tuple[list[float], list[float]]] | None = None,
                 own_view: list[int | None] | None = None,
                 own_normalisation: list[tuple[list[float], list[float]] | None] | None = None) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)
        self.own_view = own_view or [None] * len(models)
        for index, (scale, shift) in enumerate(renormalise or []):
            self.register_buffer(f"scale{index}", torch.tensor(scale).view(1, -1, 1, 1), persistent=False)
            self.register_buffer(f"shift{index}", torch.tensor(shift).view(1, -1, 1, 1), persistent=False)
        for index, statistics in enumerate(own_normalisation or []):
            if statistics is not None:
                self.register_buffer(f"mean{index}", channel_statistics(statistics[0]), persistent=False)
                self.register_buffer(f"std{index}", channel_statistics(statistics[1]), persistent=False)
        self.renormalises = renormalise is not None
        self.requires_grad_(False)
        self.eval()

    @property
    def views(self) -> int:
        """How many own views (other preprocessings) its forward needs besides the student's batch."""
        return len({view for view in self.own_view if view is not None})

    def teacher_inputs(self, index: int, inputs: torch.Tensor, views: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        """What teacher `index` reads: the student-normalised `inputs` converted, or its own uint8 view normalised.

        Parameters
        ----------
        index : int
            The teacher's position in `models`.
        inputs : torch.Tensor of shape (N, C, H, W), float
            The student's normalised batch.
        views : tuple of torch.Tensor of shape (N, C', H', W'), uint8
            The own views, in `own_view` numbering.

        Returns
        -------
        torch.Tensor of shape (N, C, H, W) or (N, C', H', W'), float32
            Its own view channels last; the student's batch as it is, or x * scale + shift.
        """
        view = self.own_view[index]
        if view is not None:
            own = normalise(views[view], getattr(self, f"mean{index}"), getattr(self, f"std{index}"))
            return own.contiguous(memory_format=torch.channels_last)
        if not self.renormalises:
            return inputs
        return inputs * getattr(self, f"scale{index}") + getattr(self, f"shift{index}")

    def train(self, mode: bool = True) -> FrozenTeacher:
        """Stays in eval mode whatever `mode` is (a parent's train() reaches it too)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor, views: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        """Every teacher's logits for one batch, without gradients.

        Parameters
        ----------
        inputs : torch.Tensor of shape (N, C, H, W), float
            The student's normalised batch.
        views : tuple of torch.Tensor of shape (N, C', H', W'), uint8, default ()
            The teachers' own views of the same samples (see `teacher_inputs`).

        Returns
        -------
        torch.Tensor of shape (N, teachers, C), float32
        """
        return torch.stack([model(self.teacher_inputs(i, inputs, views)).float()
                            for i, model in enumerate(self.models)], dim=1)


def load_teachers(folders: list[str], *, classes: list[str], preprocessing: Preprocessing,
                  normalisation: Normalisation) -> tuple[FrozenTeacher, list[RunCard]]:
    """The teachers of run folders `folders` and their cards, checked to predict the student's classes. A teacher
    trained with the student's `preprocessing` reads the student's inputs (converted if it normalised otherwise, e.g.
    EfficientNet-Lite's [-1, 1]); one trained at another resolution or channel count gets its own view, numbered in
    order of first appearance of each distinct preprocessing.

    Parameters
    ----------
    folders : list of str
        The teachers' run folders.
    classes : list of str
        The student's classes, in order.
    preprocessing : Preprocessing
        The student's.
    normalisation : Normalisation
        The student's mean and std.

    Returns
    -------
    teacher : FrozenTeacher
        The models channels last, on the CPU, in eval mode.
    cards : list of RunCard
        One per folder, in order.

    Raises
    ------
    DistillationError
        When a teacher predicts other classes, or the same in another order.
    CardError
        A ModelError: a folder without a card this medkd can read.
    """
    models, cards, renormalise = [], [], []
    own_view: list[int | None] = []
    own_normalisation: list[tuple[list[float], list[float]] | None] = []
    distinct: list[Preprocessing] = []
    for folder in folders:
        model, card = load_model(Path(folder))
        if card.classes != classes:
            raise DistillationError(
                f"teacher {folder} predicts classes {card.classes!r}, the student {classes!r}: distil from a "
                "teacher trained on the same classes, in the same order")
        norm = card.normalisation
        if card.preprocessing == preprocessing:
            renormalise.append(conversion(normalisation, norm))
            own_view.append(None)
            own_normalisation.append(None)
        else:
            renormalise.append(([1.0] * len(norm.std), [0.0] * len(norm.std)))
            if card.preprocessing not in distinct:
                distinct.append(card.preprocessing)
            own_view.append(distinct.index(card.preprocessing))
            own_normalisation.append((norm.mean, norm.std))
        models.append(model.to(memory_format=torch.channels_last))
        cards.append(card)
    return FrozenTeacher(models, renormalise, own_view, own_normalisation), cards


def conversion(student: Normalisation, teacher: Normalisation) -> tuple[list[float], list[float]]:
    """(scale, shift) per channel with x_teacher = x_student * scale + shift, from the two normalisations
    (x = (pixel - mean) / std on pixels scaled to [0, 1])."""
    scale = [s_std / t_std for s_std, t_std in zip(student.std, teacher.std)]
    shift = [(s_mean - t_mean) / t_std for s_mean, t_mean, t_std in zip(student.mean, teacher.mean, teacher.std)]
    return scale, shift
