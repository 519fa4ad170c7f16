"""The Lightning module of a distillation run: a student trained on labels and on a frozen teacher's outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from medkd.distillation.config import HINT_ONLY, DistillConfig
from medkd.distillation.hint import FeatureHint
from medkd.distillation.losses import build_logit_loss, ensemble_logits, soft_kl
from medkd.distillation.teacher import FrozenTeacher
from medkd.engine import ClassifierModule, TrainConfig, classification_loss, mixed_classification_loss

TEACHER = "teacher."


class StudentBatch(NamedTuple):
    """A distilled run's train batch by field (the loader's tuple is positional, and its tail means one thing or
    the other by `teacher_outputs`): the student's inputs (B, C, H, W), normalised; labels (B,); the cached teacher
    logits (B, teachers, classes), or online (None) each teacher's own uint8 view (B, C', H', W') where it reads
    another preprocessing than the student's; replayed mixed views (cached_views with mixup) also carry each
    image's partner label (B,) and the share of its own image (B,), float32."""

    inputs: torch.Tensor
    labels: torch.Tensor
    teacher_logits: torch.Tensor | None
    teacher_views: tuple[torch.Tensor, ...]
    partner_labels: torch.Tensor | None = None
    own_weight: torch.Tensor | None = None

    @classmethod
    def of(cls, batch: Sequence[torch.Tensor], *, online: bool) -> StudentBatch:
        inputs, labels, *rest = batch
        if online:
            return cls(inputs, labels, None, tuple(rest))
        return cls(inputs, labels, rest[0], (), *rest[1:3])  # mixed in the loader: partner labels and weights


class DistillationModule(ClassifierModule):
    """Student `model` + frozen `teacher`. Train batches are (images, labels, *the teacher's own views) with online
    teacher outputs, or (images, labels, teacher logits) with cached ones, then (partner labels, own-image weights)
    with replayed mixed views; val batches always carry cached teacher logits.

    The loss is (1 - alpha) x the hard-label loss + alpha x the logit loss (the hard-label loss alone for loss:
    hint), plus the weighted feature hint when there is one. Besides ClassifierModule's metrics it logs
    train_kd_loss, train_hint_loss, val_agreement (share of equal argmax decisions) and val_teacher_kl
    (KL(teacher || student) at T = 1). Its checkpoints leave the teacher's weights out.

    Parameters
    ----------
    model : nn.Module
        The student: normalised images (B, C, H, W) -> logits (B, classes).
    teacher : FrozenTeacher
        Its output: stacked logits (B, teachers, classes).
    settings : TrainConfig
        The student's training settings.
    distill : DistillConfig
        The loss, temperature, alpha, hint and how teacher outputs are produced.
    mean, std : list of float of length C
        The student's normalisation.
    class_weight : torch.Tensor of shape (classes,), float32, optional
        Class weights of the hard-label loss, and of the logit loss with distill.weight_by_class.
    example : torch.Tensor of shape (B, C, H, W), float, optional
        Normalised student inputs, for a feature hint to learn its maps' channel counts (needed with one).
    """

    def __init__(self, model: nn.Module, teacher: FrozenTeacher, settings: TrainConfig, distill: DistillConfig, *,
                 mean: list[float], std: list[float], class_weight: torch.Tensor | None = None,
                 example: torch.Tensor | None = None, backbone_lr_scale: float = 1.0) -> None:
        super().__init__(model, settings, mean=mean, std=std, class_weight=class_weight,
                         backbone_lr_scale=backbone_lr_scale)
        self.teacher, self.distill = teacher, distill
        self.logit_loss = (None if distill.loss == HINT_ONLY
                           else build_logit_loss(distill.loss, distill.temperature, distill.loss_params))
        self.hint: FeatureHint | None = None
        if distill.hint is not None:
            assert example is not None  # a feature hint finds its maps' channel counts on an example batch
            self.hint = FeatureHint(model, teacher.models[0], distill.hint, example)

    def named(self, batch: Sequence[torch.Tensor] | StudentBatch) -> StudentBatch:
        """The loader's positional batch by field, for this run's teacher_outputs."""
        if isinstance(batch, StudentBatch):
            return batch
        return StudentBatch.of(batch, online=self.distill.teacher_outputs == "online")

    def teacher_targets(self, batch: Sequence[torch.Tensor] | StudentBatch) -> torch.Tensor:
        """The teacher's (ensemble) logits for a train batch (positional or a StudentBatch): cached in the batch,
        or computed now.

        Returns
        -------
        torch.Tensor of shape (B, classes)
            The ensemble's logits at distill.temperature (see `ensemble_logits`).
        """
        named = self.named(batch)
        if named.teacher_logits is not None:
            return ensemble_logits(named.teacher_logits, self.distill.temperature)
        return ensemble_logits(self.teacher(named.inputs, named.teacher_views), self.distill.temperature)

    def mixed(self, named: StudentBatch) -> StudentBatch:
        """Function matching's mixup (distill.mixup > 0) with online teachers: the batch, its own views too, mixed
        with a shuffled copy of itself at lambda ~ Beta(mixup, mixup), with the partners' labels and lambda; a
        batch mixed in the loader (replayed mixed views), or without mixup, unchanged."""
        if not self.distill.mixup or named.partner_labels is not None:
            return named
        concentration = torch.tensor(float(self.distill.mixup))
        weight = torch.distributions.Beta(concentration, concentration).sample().to(named.labels.device)
        partner = torch.randperm(len(named.labels), device=named.labels.device)

        def mix(images: torch.Tensor) -> torch.Tensor:  # uint8 own views become float pixels, normalised alike
            return torch.lerp(images[partner].float(), images.float(), weight)

        return named._replace(inputs=mix(named.inputs), teacher_views=tuple(mix(v) for v in named.teacher_views),
                              partner_labels=named.labels[partner], own_weight=weight)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        """The distillation loss (scalar) of a train batch (see StudentBatch)."""
        named = self.mixed(self.named(batch))
        inputs, labels = named.inputs, named.labels
        logits = self(inputs).float()
        teacher = self.teacher_targets(named)
        if named.partner_labels is None:
            hard = classification_loss(logits, labels, self.settings.loss, self.class_weight)
        else:  # mixup's hard-label loss: both labels, weighted as their images are
            assert named.own_weight is not None  # a mixed batch carries its weights with its partners' labels
            hard = mixed_classification_loss(logits, labels, named.partner_labels, named.own_weight,
                                             self.settings.loss, self.class_weight)
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
        """val_auc and val_acc, then the student's agreement with the teacher and KL(teacher || student).

        Parameters
        ----------
        logits : torch.Tensor of shape (N, classes), float32
            The student's, on the whole validation split.
        labels : torch.Tensor of shape (N,), int64
        *targets : torch.Tensor
            targets[0]: the cached teacher logits (N, teachers, classes).
        """
        super().log_validation_metrics(logits, labels)
        teacher = ensemble_logits(targets[0].to(logits.device), self.distill.temperature)
        self.log("val_agreement", (logits.argmax(dim=1) == teacher.argmax(dim=1)).float().mean(), prog_bar=True,
                 sync_dist=True)
        self.log("val_teacher_kl", soft_kl(logits, teacher, 1.0).mean(), sync_dist=True)

    def extra_parameters(self) -> list[nn.Parameter]:
        """The feature loss's own parameters (e.g. a FitNet connector); none without a hint."""
        return [] if self.hint is None else list(self.hint.feature_loss.parameters())

    # The teacher is loaded from its own run folder: checkpoints of this run leave its weights out.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Lightning's hook: drop the teacher's tensors from the checkpoint."""
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(TEACHER)]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Lightning's hook: put the loaded teacher's own tensors back, so the checkpoint loads strictly."""
        checkpoint["state_dict"].update({TEACHER + k: v for k, v in self.teacher.state_dict().items()})
