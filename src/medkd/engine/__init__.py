"""Training engine on Lightning, shared by train, distill and pretrain.

Public API: TrainConfig (and its parts), fit(), ClassifierModule, TensorDataModule.
"""

from medkd.engine.callbacks import EpochMetricsCSV
from medkd.engine.config import AugmentConfig, LossConfig, OptimizerConfig, ScheduleConfig, TrainConfig
from medkd.engine.datamodule import TensorDataModule
from medkd.engine.fit import fit, lightning_precision, loader_workers, native_cpu_bf16
from medkd.engine.losses import classification_loss
from medkd.engine.module import ClassifierModule

__all__ = ["AugmentConfig", "ClassifierModule", "EpochMetricsCSV", "LossConfig", "OptimizerConfig", "ScheduleConfig", "TensorDataModule",
           "TrainConfig", "classification_loss", "fit", "lightning_precision", "loader_workers", "native_cpu_bf16"]
