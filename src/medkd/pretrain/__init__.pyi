# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .config import PretrainConfig as PretrainConfig
from .config import ViewConfig as ViewConfig
from .run import pretrain as pretrain

__all__ = ["PretrainConfig", "ViewConfig", "pretrain"]
