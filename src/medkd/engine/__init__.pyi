# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .augment import BatchAugmentation as BatchAugmentation
from .augment import build_augmentation as build_augmentation
from .augment import build_batch_augmentation as build_batch_augmentation
from .callbacks import EPOCH_COLUMNS as EPOCH_COLUMNS
from .callbacks import EpochMetricsCSV as EpochMetricsCSV
from .config import AugmentConfig as AugmentConfig
from .config import LossConfig as LossConfig
from .config import OptimiserConfig as OptimiserConfig
from .config import ScheduleConfig as ScheduleConfig
from .config import TrainConfig as TrainConfig
from .datamodule import TensorDataModule as TensorDataModule
from .datamodule import ViewPlan as ViewPlan
from .datamodule import augment_seeded as augment_seeded
from .datamodule import augmented_view as augmented_view
from .datamodule import view_partner as view_partner
from .datamodule import view_seed as view_seed
from .finish import calibrate_on_validation as calibrate_on_validation
from .finish import feature_guard as feature_guard
from .fit import fit as fit
from .losses import class_weighted_mean as class_weighted_mean
from .losses import classification_loss as classification_loss
from .losses import mixed_classification_loss as mixed_classification_loss
from .module import ClassifierModule as ClassifierModule
from .module import auroc as auroc
from .trainer import build_trainer as build_trainer
from .trainer import lightning_notices_silenced as lightning_notices_silenced
from .transfer import TRANSFER_MODES as TRANSFER_MODES
from .transfer import TransferMode as TransferMode
from .transfer import TransferSettings as TransferSettings
from .transfer import register_transfer as register_transfer
from .transfer import transfer_mode as transfer_mode
from .transfer import transfer_mode_class as transfer_mode_class

__all__ = [
    "AugmentConfig",
    "EPOCH_COLUMNS",
    "TRANSFER_MODES",
    "TransferMode",
    "TransferSettings",
    "BatchAugmentation",
    "ClassifierModule",
    "EpochMetricsCSV",
    "LossConfig",
    "OptimiserConfig",
    "ScheduleConfig",
    "TensorDataModule",
    "TrainConfig",
    "ViewPlan",
    "augment_seeded",
    "augmented_view",
    "auroc",
    "build_augmentation",
    "calibrate_on_validation",
    "feature_guard",
    "build_batch_augmentation",
    "build_trainer",
    "class_weighted_mean",
    "classification_loss",
    "fit",
    "lightning_notices_silenced",
    "mixed_classification_loss",
    "register_transfer",
    "transfer_mode",
    "transfer_mode_class",
    "view_partner",
    "view_seed",
]
