"""Models: one factory (`create_model`) over medkd's CNNs, torchvision classifiers and timm models.

Public API: create_model, list_models, register_model, load_checkpoint, classifier_name, ModelError.
"""

from medkd.models import cnn  # noqa: F401  (registers the builtin CNNs)
from medkd.models.errors import ModelError
from medkd.models.registry import classifier_name, create_model, list_models, normalisation, register_model
from medkd.models.run_folder import load_model, read_sidecar, save_model
from medkd.models.weights import LoadReport, load_checkpoint, read_state_dict

__all__ = ["LoadReport", "ModelError", "classifier_name", "create_model", "list_models", "load_checkpoint", "load_model",
           "normalisation", "read_sidecar", "save_model",
           "read_state_dict", "register_model"]
