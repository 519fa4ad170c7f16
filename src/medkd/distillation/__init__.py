"""Knowledge distillation: any trained run (or an ensemble of runs) teaches any student from the model factory.

Public API: distill, sweep, Distillation (the fit() extension), DistillConfig, HintConfig, DistillationModule,
FrozenTeacher, load_teachers, LOGIT_LOSSES, register_logit_loss, ensemble_logits, DistillationError.
"""

from medkd.distillation.config import DistillConfig, HintConfig
from medkd.distillation.losses import LOGIT_LOSSES, LogitLoss, build_logit_loss, ensemble_logits, register_logit_loss
from medkd.distillation.module import DistillationModule
from medkd.distillation.run import Distillation, distill, sweep
from medkd.distillation.teacher import DistillationError, FrozenTeacher, load_teachers

__all__ = ["LOGIT_LOSSES", "DistillConfig", "LogitLoss", "build_logit_loss", "Distillation", "DistillationError", "DistillationModule", "FrozenTeacher",
           "HintConfig", "distill", "ensemble_logits", "load_teachers", "register_logit_loss", "sweep"]
