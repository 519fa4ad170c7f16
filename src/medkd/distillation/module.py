"""The Lightning module of a distillation run: a student trained on labels and on a frozen teacher's outputs."""

from __future__ import annotations

import torch
from torch import nn

from medkd.distillation.config import HINT_ONLY, DistillConfig
from medkd.distillation.hint import FeatureHint
from medkd.distillation.losses import build_logit_loss, ensemble_logits, soft_kl
from medkd.distillation.teacher import FrozenTeacher
from medkd.engine import ClassifierModule, TrainConfig, classification_loss

TEACHER = "teacher."


class DistillationModule(ClassifierModule):
    """Student `model` + frozen `teacher`. Train batches are (images, labels, *the teacher's own views) with online
    teacher outputs, or (images, labels, teacher logits) with cached ones; val batches always carry cached teacher
    logits."""

    def __init__(self, model: nn.Module, teacher: FrozenTeacher, settings: TrainConfig, distill: DistillConfig, *,
                 mean: list[float], std: list[float], class_weight: torch.Tensor | None = None,
                 example: torch.Tensor | None = None) -> None:
        super().__init__(model, settings, mean=mean, std=std, class_weight=class_weight)
        self.teacher, self.distill = teacher, distill
        self.logit_loss = (None if distill.loss == HINT_ONLY
                           else build_logit_loss(distill.loss, distill.temperature, distill.loss_params))
        self.hint = None if distill.hint is None else FeatureHint(model, teacher.models[0], distill.hint, example)

    def teacher_targets(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The teacher's (ensemble) logits for a normalised batch: cached in the batch, or computed now."""
        online = self.distill.teacher_outputs == "online"
        stacked = self.teacher(batch[0], tuple(batch[2:])) if online else batch[2]
        return ensemble_logits(stacked, self.distill.temperature)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        inputs, labels = batch[:2]
        logits = self(inputs).float()
        teacher = self.teacher_targets(batch)
        hard = classification_loss(logits, labels, self.settings.loss, self.class_weight)
        loss = hard
        if self.logit_loss is not None:
            distilled = self.logit_loss(logits, teacher, labels,
                                        self.class_weight if self.distill.weight_by_class else None)
            loss = (1 - self.distill.alpha) * hard + self.distill.alpha * distilled
            self.log("train_kd_loss", distilled, on_step=False, on_epoch=True, batch_size=len(labels),
                     sync_dist=True)
        if self.hint is not None:
            hint = self.hint.loss()
            loss = loss + hint
            self.log("train_hint_loss", hint, on_step=False, on_epoch=True, batch_size=len(labels),
                     sync_dist=True)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(labels),
                 sync_dist=True)
        return loss

    def log_validation_metrics(self, logits: torch.Tensor, labels: torch.Tensor, *targets: torch.Tensor) -> None:
        super().log_validation_metrics(logits, labels)
        teacher = ensemble_logits(targets[0].to(logits.device), self.distill.temperature)
        self.log("val_agreement", (logits.argmax(dim=1) == teacher.argmax(dim=1)).float().mean(), prog_bar=True,
                 sync_dist=True)
        self.log("val_teacher_kl", soft_kl(logits, teacher, 1.0).mean(), sync_dist=True)

    def extra_parameters(self) -> list[nn.Parameter]:
        return [] if self.hint is None else list(self.hint.feature_loss.parameters())

    # The teacher is loaded from its own run folder: checkpoints of this run leave its weights out.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(TEACHER)]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"].update({TEACHER + k: v for k, v in self.teacher.state_dict().items()})
