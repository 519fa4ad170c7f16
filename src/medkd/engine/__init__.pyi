# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .augment import BatchAugmentation as BatchAugmentation, build_augmentation as build_augmentation, build_batch_augmentation as build_batch_augmentation
from .callbacks import EpochMetricsCSV as EpochMetricsCSV
from .config import AugmentConfig as AugmentConfig, LossConfig as LossConfig, OptimizerConfig as OptimizerConfig, ScheduleConfig as ScheduleConfig, TrainConfig as TrainConfig
from .datamodule import TensorDataModule as TensorDataModule, ViewPlan as ViewPlan, augment_seeded as augment_seeded, augmented_view as augmented_view, view_seed as view_seed
from .fit import fit as fit
from .losses import class_weighted_mean as class_weighted_mean, classification_loss as classification_loss
from .module import ClassifierModule as ClassifierModule
from .trainer import build_trainer as build_trainer, lightning_notices_silenced as lightning_notices_silenced

__all__ = ["AugmentConfig", "BatchAugmentation", "ClassifierModule", "EpochMetricsCSV", "LossConfig", "OptimizerConfig", "ScheduleConfig", "TensorDataModule", "TrainConfig", "ViewPlan", "augment_seeded", "augmented_view", "build_augmentation", "build_batch_augmentation", "build_trainer", "class_weighted_mean", "classification_loss", "fit", "lightning_notices_silenced", "view_seed"]
