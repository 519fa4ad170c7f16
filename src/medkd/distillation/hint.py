"""FitNets-style feature hints: forward hooks capture named feature maps, a 1x1 conv maps student to teacher."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medkd.distillation.config import HintConfig
from medkd.distillation.teacher import DistillationError


def named_module(model: nn.Module, name: str, role: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, m in model.named_modules() if n and len(list(m.children())) > 0][:20]
        raise DistillationError(f"{role} has no module {name!r}; some of its modules: {', '.join(names)}") from None


class FeatureHint(nn.Module):
    """Captures `student_layer` and `teacher_layer` outputs on every forward pass; `loss()` compares them."""

    def __init__(self, student: nn.Module, teacher: nn.Module, settings: HintConfig, example: torch.Tensor) -> None:
        super().__init__()
        self.settings = settings
        self.captured: dict[str, torch.Tensor] = {}
        for role, model, name in (("student", student, settings.student_layer), ("teacher", teacher, settings.teacher_layer)):
            named_module(model, name, role).register_forward_hook(self._keeper(role))
        was_training = student.training
        with torch.no_grad():  # one dry pass learns the channel counts of the two maps
            student.eval()(example)
            teacher(example)
        student.train(was_training)
        student_map, teacher_map = self.captured["student"], self.captured["teacher"]
        if student_map.dim() != 4 or teacher_map.dim() != 4:
            raise DistillationError("hint layers must output feature maps (N, C, H, W); pick convolutional stages")
        self.connector = nn.Conv2d(student_map.shape[1], teacher_map.shape[1], kernel_size=1)
        self.captured.clear()

    def _keeper(self, role: str):
        def keep(module: nn.Module, inputs, output: torch.Tensor) -> None:
            self.captured[role] = output
        return keep

    def loss(self) -> torch.Tensor:
        """Mean squared error between the connected student map (resized to the teacher's) and the teacher map."""
        student = self.connector(self.captured["student"].float())
        teacher = self.captured["teacher"].float().detach()
        if student.shape[-2:] != teacher.shape[-2:]:
            student = F.interpolate(student, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
        return self.settings.weight * F.mse_loss(student, teacher)
