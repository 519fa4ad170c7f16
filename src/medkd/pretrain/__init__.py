"""Self-supervised pretraining (lightly: MoCo v2, SimCLR) of any factory backbone on unlabelled images.

Public API: pretrain, PretrainConfig, ViewConfig, BACKBONE.
"""

from medkd.pretrain.config import PretrainConfig, ViewConfig
from medkd.pretrain.run import pretrain

__all__ = ["PretrainConfig", "ViewConfig", "pretrain"]
