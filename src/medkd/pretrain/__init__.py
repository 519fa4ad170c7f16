"""Self-supervised pretraining (lightly: MoCo v2, SimCLR) of any factory backbone on unlabelled images.

Public API: pretrain, PretrainConfig, ViewConfig, BACKBONE.
"""

import lazy_loader

# Submodules load on first use: `import medkd.pretrain` costs nothing until a name is used
# (the public API and its types are in __init__.pyi).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
