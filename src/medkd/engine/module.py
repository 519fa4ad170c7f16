"""The Lightning module of every classifier run: normalisation, loss, validation metrics, optimiser, schedule."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics.functional.classification import binary_auroc, multiclass_auroc

from medkd.engine.config import TrainConfig
from medkd.engine.losses import classification_loss
from medkd.models import channel_statistics, classifier_name, normalise


def auroc(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AUC-ROC: of the positive class for two classes, one-vs-rest macro average otherwise."""
    if probabilities.shape[1] == 2:
        return binary_auroc(probabilities[:, 1], labels)
    return multiclass_auroc(probabilities, labels, num_classes=probabilities.shape[1], average="macro")


class ClassifierModule(L.LightningModule):
    """Trains `model` on labelled batches. Image batches arrive as uint8 and are normalised here with `mean`
    and `std`; without them the inputs are used as they come (cached features of a linear probe).

    Batches are (inputs, labels (B,) int64, *targets); it logs train_loss, val_loss, val_auc and val_acc, epoch
    means over every process of a distributed run. The optimiser has two groups: the head (and
    `extra_parameters`) at optimiser.lr, the rest at lr x `backbone_lr_scale` (the transfer mode's); a linear
    probe's head alone is one group at lr.

    Parameters
    ----------
    model : nn.Module
        The network, inputs (B, C, H, W) -> logits (B, classes); or a linear probe's head alone,
        features (B, D) -> logits (B, classes).
    settings : TrainConfig
        Loss, optimiser, schedule, epochs and runtime (channels_last).
    mean, std : list of float of length C, optional
        The inputs' normalisation (see `normalise`); None: inputs are used as they come.
    class_weight : torch.Tensor of shape (classes,), float32, optional
        Class weights of the hard-label loss.
    backbone_lr_scale : float, default 1.0
        The backbone's learning rate as a share of the head's.
    """

    mean: torch.Tensor  # buffers registered in __init__
    std: torch.Tensor
    class_weight: torch.Tensor | None

    def __init__(self, model: nn.Module, settings: TrainConfig, *, mean: list[float] | None = None,
                 std: list[float] | None = None, class_weight: torch.Tensor | None = None,
                 backbone_lr_scale: float = 1.0) -> None:
        super().__init__()
        self.model, self.settings, self.backbone_lr_scale = model, settings, backbone_lr_scale
        self.normalise = mean is not None
        if mean is not None:
            assert std is not None  # mean and std come together
            self.register_buffer("mean", channel_statistics(mean), persistent=False)
            self.register_buffer("std", channel_statistics(std), persistent=False)
        self.register_buffer("class_weight", class_weight, persistent=False)
        self._val_outputs: list[tuple[torch.Tensor, ...]] = []  # (logits, labels, *targets) per batch

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """`model`'s logits (B, classes) for normalised inputs (B, C, H, W), or for features (B, D) (linear probe)."""
        return self.model(inputs)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Lightning's hook, on the device: the batch's uint8 images (B, C, H, W) normalised to float32 (channels
        last when the runtime asks for it), the rest of the batch as it is; without `mean`, unchanged."""
        inputs, *rest = batch
        if self.normalise:
            inputs = normalise(inputs, self.mean, self.std)
            if self.settings.runtime.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
        return (inputs, *rest)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        """The hard-label loss (scalar) of a train batch (inputs, labels (B,), ...)."""
        inputs, labels = batch[:2]
        loss = classification_loss(self(inputs), labels, self.settings.loss, self.class_weight)
        # sync_dist: epoch means over every process of a distributed run (the validation ones agree already)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(labels),
                 sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        """Log the val loss of a batch (inputs, labels (B,), *targets); keep its float32 logits (B, classes),
        labels and targets for the epoch's metrics."""
        inputs, labels = batch[:2]
        logits = self(inputs).float()
        self.log("val_loss", classification_loss(logits, labels, self.settings.loss, self.class_weight),
                 on_epoch=True, prog_bar=True, batch_size=len(labels), sync_dist=True)
        self._val_outputs.append((logits, *batch[1:]))

    def on_validation_epoch_end(self) -> None:
        """Score the whole validation split at once (AUC is not a mean over batches): log_validation_metrics."""
        logits, labels, *targets = (torch.cat(parts) for parts in zip(*self._val_outputs))
        self._val_outputs.clear()
        self.log_validation_metrics(logits, labels, *targets)

    def log_validation_metrics(self, logits: torch.Tensor, labels: torch.Tensor, *targets: torch.Tensor) -> None:
        """Epoch-level validation scores; `targets` are the val split's extra tensors (e.g. teacher logits).

        Logs val_auc (of the positive class for two classes, one-vs-rest macro otherwise) and val_acc (argmax).

        Parameters
        ----------
        logits : torch.Tensor of shape (N, classes), float32
            The whole validation split's.
        labels : torch.Tensor of shape (N,), int64
        *targets : torch.Tensor of first dimension N
            Not read here; a subclass's (e.g. teacher logits (N, teachers, classes)).
        """
        probabilities = logits.softmax(dim=1)
        self.log("val_auc", auroc(probabilities, labels), prog_bar=True, sync_dist=True)
        self.log("val_acc", (probabilities.argmax(dim=1) == labels).float().mean(), prog_bar=True, sync_dist=True)

    def extra_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters outside `model` (e.g. a distillation connector); they train at the head's lr."""
        return []

    def configure_optimizers(self):
        """AdamW, or SGD with Nesterov momentum, over the two parameter groups (head and the rest), with the
        schedule stepped every optimiser step: one-cycle, or a linear warm-up then cosine decay or constant."""
        optimiser_settings = self.settings.optimiser
        head = classifier_name(self.model)  # "" when the model is the head itself (linear probe): no split
        head_params = [p for n, p in self.model.named_parameters() if head and n.startswith(head + ".")]
        head_params += self.extra_parameters()
        head_ids = {id(p) for p in head_params}
        body_params = [p for p in self.model.parameters() if p.requires_grad and id(p) not in head_ids]
        scale = self.backbone_lr_scale
        groups: list[dict[str, Any]] = [g for g in ({"params": body_params, "lr": optimiser_settings.lr * scale},
                              {"params": head_params, "lr": optimiser_settings.lr}) if g["params"]]
        optimiser: torch.optim.Optimizer
        if optimiser_settings.name == "adamw":
            optimiser = torch.optim.AdamW(groups, weight_decay=optimiser_settings.weight_decay)
        else:
            optimiser = torch.optim.SGD(groups, momentum=optimiser_settings.momentum,
                                        weight_decay=optimiser_settings.weight_decay, nesterov=True)
        total = int(self.trainer.estimated_stepping_batches)
        schedule = self.settings.schedule
        scheduler: torch.optim.lr_scheduler.LRScheduler
        if schedule.name == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=[g["lr"] for g in groups],
                                                            total_steps=total)
        else:
            warmup = int(schedule.warmup_epochs * total / self.settings.epochs)
            cosine = schedule.name == "cosine"

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                if not cosine:
                    return 1.0
                progress = (step - warmup) / max(1, total - warmup)
                return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

            scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
