"""Models: one factory (`create_model`) over medkd's CNNs, EfficientNet-Lite, torchvision classifiers and timm models.

Public API: create_model, list_models, register_model, pretrained_config, normalisation, load_model,
load_checkpoint, classifier_name, feature_width, headless, WithFeatures (logits and guard features of FEATURE_KINDS),
ModelError.
"""

from medkd.models import cnn, efficientnet_lite  # noqa: F401  (register their models)
from medkd.models.errors import ModelError
from medkd.models.features import FEATURE_KINDS, WithFeatures
from medkd.models.inputs import channel_statistics, normalise
from medkd.models.pretrained import PackagedCheckpoint, PretrainedConfig, TimmHub, TorchvisionHub
from medkd.models.registry import create_model, list_models, normalisation, pretrained_config, register_model
from medkd.models.run_folder import load_model, read_sidecar, save_model
from medkd.models.surgery import classifier_name, feature_width, headless
from medkd.models.weights import LoadReport, load_checkpoint, read_state_dict

__all__ = ["FEATURE_KINDS", "WithFeatures", "LoadReport", "ModelError", "PackagedCheckpoint", "PretrainedConfig", "TimmHub", "TorchvisionHub",
           "channel_statistics", "classifier_name", "feature_width", "create_model", "headless", "list_models", "load_checkpoint", "load_model",
           "normalisation", "normalise", "pretrained_config", "read_sidecar", "read_state_dict", "register_model", "save_model"]
