"""Self-supervised methods as Lightning modules, built from lightly's losses, heads and momentum utilities."""

from __future__ import annotations

import copy

import lightning as L
import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead, SimCLRProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from medkd.pretrain.config import PretrainConfig


class SelfSupervised(L.LightningModule):
    """Backbone + projection head trained so that two views of one image agree (and differ from others).

    moco: queries from the backbone, keys from its momentum copy, negatives from a memory bank (MoCo v2).
    simclr: both views through the same network, negatives from the batch (SimCLR).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, settings: PretrainConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.settings = settings
        heads = {"moco": MoCoProjectionHead, "simclr": SimCLRProjectionHead}
        self.projection = heads[settings.method](feature_dim, settings.projection_hidden, settings.projection_dim)
        bank = (settings.memory_bank_size, settings.projection_dim) if settings.method == "moco" else 0
        # gather_distributed: under DDP, negatives (and the memory bank's updates) from every process, as lightly
        # recommends; the same loss in one process
        self.criterion = NTXentLoss(temperature=settings.temperature, memory_bank_size=bank, gather_distributed=True)
        if settings.method == "moco":
            self.backbone_momentum = copy.deepcopy(backbone)
            self.projection_momentum = copy.deepcopy(self.projection)
            deactivate_requires_grad(self.backbone_momentum)
            deactivate_requires_grad(self.projection_momentum)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.projection(self.backbone(images).flatten(start_dim=1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        view_a, view_b = batch
        if self.settings.method == "moco":
            start, end = self.settings.momentum
            momentum = cosine_schedule(self.global_step, self.trainer.estimated_stepping_batches, start, end)
            update_momentum(self.backbone, self.backbone_momentum, m=momentum)
            update_momentum(self.projection, self.projection_momentum, m=momentum)
            with torch.no_grad():
                keys = self.projection_momentum(self.backbone_momentum(view_b).flatten(start_dim=1))
            loss = self.criterion(self.embed(view_a), keys)
        else:
            loss = self.criterion(self.embed(view_a), self.embed(view_b))
        self.log("ssl_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(view_a),
                 sync_dist=True)
        return loss

    def configure_optimizers(self):
        optimiser = torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=self.settings.lr,
                                      weight_decay=self.settings.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser,
                                                              T_max=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
