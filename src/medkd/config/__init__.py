"""Recipes: YAML files validated against the packages' own settings models, with errors a person can act on."""

import lazy_loader

# Submodules load on first use: `import medkd.config` costs nothing until a name is used
# (the public API and its types are in __init__.pyi).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
