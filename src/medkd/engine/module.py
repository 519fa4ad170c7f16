"""The Lightning module of every classifier run: normalisation, loss, validation metrics, optimiser, schedule."""

from __future__ import annotations

import math

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
    and `std`; without them the inputs are used as they come (cached features of a linear probe)."""

    def __init__(self, model: nn.Module, settings: TrainConfig, *, mean: list[float] | None = None,
                 std: list[float] | None = None, class_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model, self.settings = model, settings
        self.normalise = mean is not None
        if self.normalise:
            self.register_buffer("mean", channel_statistics(mean), persistent=False)
            self.register_buffer("std", channel_statistics(std), persistent=False)
        self.register_buffer("class_weight", class_weight, persistent=False)
        self._val_outputs: list[tuple[torch.Tensor, ...]] = []  # (logits, labels, *targets) per batch

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        inputs, *rest = batch
        if self.normalise:
            inputs = normalise(inputs, self.mean, self.std)
            if self.settings.runtime.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
        return (inputs, *rest)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        inputs, labels = batch[:2]
        loss = classification_loss(self(inputs), labels, self.settings.loss, self.class_weight)
        # sync_dist: epoch means over every process of a distributed run (the validation ones agree already)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(labels),
                 sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        inputs, labels = batch[:2]
        logits = self(inputs).float()
        self.log("val_loss", classification_loss(logits, labels, self.settings.loss, self.class_weight),
                 on_epoch=True, prog_bar=True, batch_size=len(labels), sync_dist=True)
        self._val_outputs.append((logits, *batch[1:]))

    def on_validation_epoch_end(self) -> None:
        logits, labels, *targets = (torch.cat(parts) for parts in zip(*self._val_outputs))
        self._val_outputs.clear()
        self.log_validation_metrics(logits, labels, *targets)

    def log_validation_metrics(self, logits: torch.Tensor, labels: torch.Tensor, *targets: torch.Tensor) -> None:
        """Epoch-level validation scores; `targets` are the val split's extra tensors (e.g. teacher logits)."""
        probabilities = logits.softmax(dim=1)
        self.log("val_auc", auroc(probabilities, labels), prog_bar=True, sync_dist=True)
        self.log("val_acc", (probabilities.argmax(dim=1) == labels).float().mean(), prog_bar=True, sync_dist=True)

    def extra_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters outside `model` (e.g. a distillation connector); they train at the head's lr."""
        return []

    def configure_optimizers(self):
        optimiser_settings = self.settings.optimiser
        head = classifier_name(self.model)  # "" when the model is the head itself (linear probe): no split
        head_params = [p for n, p in self.model.named_parameters() if head and n.startswith(head + ".")]
        head_params += self.extra_parameters()
        head_ids = {id(p) for p in head_params}
        body_params = [p for p in self.model.parameters() if p.requires_grad and id(p) not in head_ids]
        scale = optimiser_settings.backbone_lr_scale if self.settings.transfer in ("finetune", "lp-ft") else 1.0
        groups = [g for g in ({"params": body_params, "lr": optimiser_settings.lr * scale},
                              {"params": head_params, "lr": optimiser_settings.lr}) if g["params"]]
        if optimiser_settings.name == "adamw":
            optimiser = torch.optim.AdamW(groups, weight_decay=optimiser_settings.weight_decay)
        else:
            optimiser = torch.optim.SGD(groups, momentum=optimiser_settings.momentum,
                                        weight_decay=optimiser_settings.weight_decay, nesterov=True)
        total = int(self.trainer.estimated_stepping_batches)
        schedule = self.settings.schedule
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
