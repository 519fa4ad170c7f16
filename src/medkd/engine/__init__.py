"""Training engine on Lightning, shared by train, distill and pretrain.

Public API: TrainConfig (and its parts), fit(), ClassifierModule, TensorDataModule and its ViewPlan, training
augmentation (per image in the loader, or batched on the device). A linear probe's cached backbone features are
medkd.evaluation's (cached_features, backbone_identity).
"""

from medkd.engine.augment import BatchAugmentation, build_augmentation, build_batch_augmentation
from medkd.engine.callbacks import EpochMetricsCSV
from medkd.engine.config import AugmentConfig, LossConfig, OptimizerConfig, ScheduleConfig, TrainConfig
from medkd.engine.datamodule import TensorDataModule, ViewPlan, augment_seeded, augmented_view, view_seed
from medkd.engine.fit import fit
from medkd.engine.losses import class_weighted_mean, classification_loss
from medkd.engine.module import ClassifierModule
from medkd.engine.trainer import build_trainer

__all__ = ["AugmentConfig", "BatchAugmentation", "ClassifierModule", "EpochMetricsCSV", "LossConfig", "OptimizerConfig",
           "ScheduleConfig", "TensorDataModule", "TrainConfig", "ViewPlan", "augment_seeded", "augmented_view",
           "build_augmentation", "build_batch_augmentation", "build_trainer", "class_weighted_mean",
           "classification_loss", "fit", "view_seed"]
