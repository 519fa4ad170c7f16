# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .batchnorm import batchnorm_layers as batchnorm_layers
from .batchnorm import reestimate_batchnorm as reestimate_batchnorm
from .card import CARD_FORMAT as CARD_FORMAT
from .card import CalibrationRecord as CalibrationRecord
from .card import CardError as CardError
from .card import DistillationRecord as DistillationRecord
from .card import GuardRecord as GuardRecord
from .card import Normalisation as Normalisation
from .card import PretrainedRecord as PretrainedRecord
from .card import ProbeRecord as ProbeRecord
from .card import RunCard as RunCard
from .card import SourceRecord as SourceRecord
from .errors import ModelError as ModelError
from .features import WithFeatures as WithFeatures
from .inputs import channel_statistics as channel_statistics
from .inputs import normalise as normalise
from .kinds import FEATURE_KINDS as FEATURE_KINDS
from .kinds import FeatureKind as FeatureKind
from .pretrained import CheckpointFile as CheckpointFile
from .pretrained import PackagedCheckpoint as PackagedCheckpoint
from .pretrained import PretrainedConfig as PretrainedConfig
from .pretrained import TimmHub as TimmHub
from .pretrained import TorchvisionHub as TorchvisionHub
from .registry import IMAGENET_TAG as IMAGENET_TAG
from .registry import ModelEntry as ModelEntry
from .registry import check_model_settings as check_model_settings
from .registry import create_model as create_model
from .registry import list_models as list_models
from .registry import model_entry as model_entry
from .registry import normalisation as normalisation
from .registry import pretrained_config as pretrained_config
from .registry import register_model as register_model
from .registry import register_weights as register_weights
from .registry import weight_tags as weight_tags
from .run_folder import load_model as load_model
from .run_folder import save_model as save_model
from .surgery import classifier_name as classifier_name
from .surgery import declared_layer as declared_layer
from .surgery import feature_width as feature_width
from .surgery import headless as headless
from .weights import LoadReport as LoadReport
from .weights import load_checkpoint as load_checkpoint
from .weights import read_state_dict as read_state_dict

__all__ = [
    "batchnorm_layers",
    "reestimate_batchnorm",
    "CARD_FORMAT",
    "CalibrationRecord",
    "CardError",
    "DistillationRecord",
    "GuardRecord",
    "Normalisation",
    "PretrainedRecord",
    "ProbeRecord",
    "RunCard",
    "SourceRecord",
    "FEATURE_KINDS",
    "FeatureKind",
    "IMAGENET_TAG",
    "ModelEntry",
    "check_model_settings",
    "model_entry",
    "register_weights",
    "weight_tags",
    "LoadReport",
    "ModelError",
    "CheckpointFile",
    "PackagedCheckpoint",
    "PretrainedConfig",
    "TimmHub",
    "TorchvisionHub",
    "WithFeatures",
    "channel_statistics",
    "classifier_name",
    "declared_layer",
    "create_model",
    "feature_width",
    "headless",
    "list_models",
    "load_checkpoint",
    "load_model",
    "normalisation",
    "normalise",
    "pretrained_config",
    "read_state_dict",
    "register_model",
    "save_model",
]
