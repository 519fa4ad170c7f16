"""Models: one factory (`create_model`) over medkd's CNNs, EfficientNet-Lite, torchvision classifiers and timm models.

Public API: create_model, list_models, register_model, pretrained_config, normalisation, load_model,
load_checkpoint, classifier_name, feature_width, headless, WithFeatures (logits and guard features of FEATURE_KINDS),
ModelError.
"""

import lazy_loader

# Submodules load on first use: `import medkd.models` costs nothing until a name is used
# (the public API and its types are in __init__.pyi).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
