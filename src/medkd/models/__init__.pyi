# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .errors import ModelError as ModelError
from .features import WithFeatures as WithFeatures
from .kinds import FEATURE_KINDS as FEATURE_KINDS, FeatureKind as FeatureKind
from .inputs import channel_statistics as channel_statistics, normalise as normalise
from .pretrained import CheckpointFile as CheckpointFile, PackagedCheckpoint as PackagedCheckpoint, PretrainedConfig as PretrainedConfig, TimmHub as TimmHub, TorchvisionHub as TorchvisionHub
from .registry import IMAGENET_TAG as IMAGENET_TAG, ModelEntry as ModelEntry, check_model_settings as check_model_settings, create_model as create_model, model_entry as model_entry, register_weights as register_weights, weight_tags as weight_tags, list_models as list_models, normalisation as normalisation, pretrained_config as pretrained_config, register_model as register_model
from .run_folder import load_model as load_model, save_model as save_model
from .surgery import classifier_name as classifier_name, declared_layer as declared_layer, feature_width as feature_width, headless as headless
from .weights import LoadReport as LoadReport, load_checkpoint as load_checkpoint, read_state_dict as read_state_dict

__all__ = ["FEATURE_KINDS", "FeatureKind", "IMAGENET_TAG", "ModelEntry", "check_model_settings", "model_entry", "register_weights", "weight_tags", "LoadReport", "ModelError", "CheckpointFile", "PackagedCheckpoint", "PretrainedConfig", "TimmHub", "TorchvisionHub", "WithFeatures", "channel_statistics", "classifier_name", "declared_layer", "create_model", "feature_width", "headless", "list_models", "load_checkpoint", "load_model", "normalisation", "normalise", "pretrained_config", "read_state_dict", "register_model", "save_model"]
