# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .config import DistillConfig as DistillConfig
from .config import HintConfig as HintConfig
from .hint import FEATURE_LOSSES as FEATURE_LOSSES
from .hint import FeatureLoss as FeatureLoss
from .hint import register_feature_loss as register_feature_loss
from .losses import LOGIT_LOSSES as LOGIT_LOSSES
from .losses import LogitLoss as LogitLoss
from .losses import build_logit_loss as build_logit_loss
from .losses import ensemble_logits as ensemble_logits
from .losses import register_logit_loss as register_logit_loss
from .module import DistillationModule as DistillationModule
from .module import StudentBatch as StudentBatch
from .run import Distillation as Distillation
from .run import distill as distill
from .run import sweep as sweep
from .teacher import DistillationError as DistillationError
from .teacher import FrozenTeacher as FrozenTeacher
from .teacher import load_teachers as load_teachers

__all__ = [
    "FEATURE_LOSSES",
    "FeatureLoss",
    "register_feature_loss",
    "DistillConfig",
    "Distillation",
    "DistillationError",
    "DistillationModule",
    "FrozenTeacher",
    "HintConfig",
    "LOGIT_LOSSES",
    "LogitLoss",
    "StudentBatch",
    "build_logit_loss",
    "distill",
    "ensemble_logits",
    "load_teachers",
    "register_logit_loss",
    "sweep",
]
