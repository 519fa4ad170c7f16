"""Models: one factory (`create_model`) over medkd's CNNs, torchvision classifiers and timm models.

Public API: create_model, list_models, register_model, load_checkpoint, classifier_name, ModelError.
"""

from medkd.models import cnn  # noqa: F401  (registers the builtin CNNs)
from medkd.models.errors import ModelError
from medkd.models.registry import classifier_name, create_model, list_models, register_model
from medkd.models.weights import LoadReport, load_checkpoint, read_state_dict

__all__ = ["LoadReport", "ModelError", "classifier_name", "create_model", "list_models", "load_checkpoint",
           "read_state_dict", "register_model"]
