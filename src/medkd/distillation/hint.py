"""Feature-level distillation (hints): forward hooks capture a named feature map of the student and of the
teacher, and a registered feature loss compares them (as torchdistill's mid-level losses: a loss is one class,
its module paths and settings in the recipe's `distill.hint`).

A feature loss is built with the two maps' channel counts and its `Params`; `forward(student, teacher)` takes
maps (N, Cs, Hs, Ws) and (N, Ct, Ht, Wt) and returns a scalar; its own parameters (e.g. a connector) train with
the student.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from medkd.distillation.config import HintConfig
from medkd.distillation.teacher import DistillationError
from medkd.registry import Registry
from medkd.settings import StrictModel

log = logging.getLogger(__name__)


class NoParams(StrictModel):
    """A feature loss without settings of its own."""


class FeatureLoss(nn.Module):
    """Base of the feature losses: built from the channel counts of the student's and the teacher's map.

    A subclass sets `Params` (a StrictModel of its own settings, from the recipe's distill.hint.loss_params) and
    implements `forward`; its parameters (e.g. a connector) train with the student, at the head's lr.

    Parameters
    ----------
    student_channels : int
        Cs, the channels of the student's map.
    teacher_channels : int
        Ct, the channels of the teacher's map.
    params : StrictModel, optional
        Validated settings of type `Params`; default: `Params()`.
    """

    Params: type[StrictModel] = NoParams

    def __init__(self, student_channels: int, teacher_channels: int, params: StrictModel | None = None) -> None:
        super().__init__()
        self.params = params if params is not None else self.Params()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The loss between the two maps of one batch; the sides may differ (the built-in losses resize the
        student's map to the teacher's).

        Parameters
        ----------
        student : torch.Tensor of shape (N, Cs, Hs, Ws), float32
        teacher : torch.Tensor of shape (N, Ct, Ht, Wt), float32
            Detached: no gradient reaches the teacher.

        Returns
        -------
        torch.Tensor of shape (), float32
        """
        raise NotImplementedError


FEATURE_LOSSES: Registry[type[FeatureLoss]] = Registry("feature loss")


def register_feature_loss(name: str) -> Callable[[type[FeatureLoss]], type[FeatureLoss]]:
    """Class decorator: register a FeatureLoss as `distill.hint.loss: name`; a later registration of the same
    name wins (with a warning). Returns the decorator (Registry.register), which returns the class unchanged."""
    return FEATURE_LOSSES.register(name)


def resized(student: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return student if student.shape[-2:] == size else F.interpolate(student, size=size, mode="bilinear",
                                                                     align_corners=False)


@register_feature_loss("fitnet")
class FitNetHint(FeatureLoss):
    """FitNets (Romero et al., ICLR 2015): the student map through a learned 1x1 convolution (resized to the
    teacher's side) regressed onto the teacher map, mean squared error."""

    def __init__(self, student_channels: int, teacher_channels: int, params: StrictModel | None = None) -> None:
        super().__init__(student_channels, teacher_channels, params)
        self.connector = nn.Conv2d(student_channels, teacher_channels, kernel_size=1)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(resized(self.connector(student), teacher.shape[-2:]), teacher)


class AttentionParams(StrictModel):
    exponent: float = Field(2.0, gt=0, description="p of the attention map sum_c |A_c|^p")


@register_feature_loss("attention")
class AttentionTransfer(FeatureLoss):
    """Attention transfer (Zagoruyko & Komodakis, ICLR 2017): where each network looks, sum_c |A_c|^p over channels,
    flattened and L2-normalised per image; the squared distance between the two. No parameters: the channel
    counts may differ."""

    Params = AttentionParams
    params: AttentionParams

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        p = self.params.exponent
        student_map = resized(student.abs().pow(p).mean(dim=1, keepdim=True), teacher.shape[-2:])
        teacher_map = teacher.abs().pow(p).mean(dim=1, keepdim=True)
        difference = F.normalize(student_map.flatten(1), dim=1) - F.normalize(teacher_map.flatten(1), dim=1)
        return difference.pow(2).sum(dim=1).mean()


def build_feature_loss(name: str, student_channels: int, teacher_channels: int, params: dict) -> FeatureLoss:
    """The registered feature loss `name` for maps of these channel counts, with its validated `params`."""
    loss = FEATURE_LOSSES[name]
    return loss(student_channels, teacher_channels, loss.Params.model_validate(params))


def named_module(model: nn.Module, name: str, role: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, m in model.named_modules() if n and len(list(m.children())) > 0][:20]
        raise DistillationError(f"{role} has no module {name!r}; some of its modules: {', '.join(names)}") from None


class FeatureHint(nn.Module):
    """Captures `student_layer` and `teacher_layer` outputs on every forward pass; `loss()` compares them with the
    hint's registered feature loss, times its weight."""

    def __init__(self, student: nn.Module, teacher: nn.Module, settings: HintConfig, example: torch.Tensor) -> None:
        super().__init__()
        self.settings = settings
        self.captured: dict[str, torch.Tensor] = {}
        for role, model, name in (("student", student, settings.student_layer),
                                  ("teacher", teacher, settings.teacher_layer)):
            named_module(model, name, role).register_forward_hook(self._keeper(role))
        was_training = student.training
        with torch.no_grad():  # one dry pass learns the channel counts of the two maps
            student.eval()(example)
            teacher(example)
        student.train(was_training)
        student_map, teacher_map = self.captured["student"], self.captured["teacher"]
        if student_map.dim() != 4 or teacher_map.dim() != 4:
            raise DistillationError("hint layers must output feature maps (N, C, H, W); pick convolutional stages")
        self.feature_loss = build_feature_loss(settings.loss, student_map.shape[1], teacher_map.shape[1],
                                               settings.loss_params)
        self.captured.clear()

    def _keeper(self, role: str):
        def keep(module: nn.Module, inputs, output: torch.Tensor) -> None:
            self.captured[role] = output
        return keep

    def loss(self) -> torch.Tensor:
        """The weighted feature loss between the captured student map and the (detached) teacher map."""
        student = self.captured["student"].float()
        teacher = self.captured["teacher"].float().detach()
        return self.settings.weight * self.feature_loss(student, teacher)
