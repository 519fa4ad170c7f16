"""Training engine on Lightning, shared by train, distill and pretrain.

Public API: TrainConfig (and its parts), fit(), ClassifierModule, TensorDataModule.
"""

from medkd.engine.callbacks import EpochMetricsCSV
from medkd.engine.config import AugmentConfig, LossConfig, OptimizerConfig, ScheduleConfig, TrainConfig
from medkd.engine.datamodule import TensorDataModule
from medkd.engine.fit import fit
from medkd.engine.losses import classification_loss
from medkd.engine.module import ClassifierModule
from medkd.engine.trainer import build_trainer

__all__ = ["AugmentConfig", "ClassifierModule", "EpochMetricsCSV", "LossConfig", "OptimizerConfig", "ScheduleConfig", "TensorDataModule",
           "TrainConfig", "build_trainer", "classification_loss", "fit"]
