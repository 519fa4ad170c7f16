"""Training engine on Lightning, shared by train, distill and pretrain.

Public API: TrainConfig (and its parts), fit(), ClassifierModule, TensorDataModule and its ViewPlan, training
augmentation (per image in the loader, or batched on the device). A linear probe's cached backbone features are
medkd.evaluation's (cached_features, backbone_identity).
"""

import lazy_loader

# Submodules load on first use: `import medkd.engine` costs nothing until a name is used
# (the public API and its types are in __init__.pyi).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
