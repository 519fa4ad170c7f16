# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .adapt import calibrate_run as calibrate_run
from .adapt import site_calibration as site_calibration
from .adapt import site_images as site_images
from .study import CEILING as CEILING
from .study import PRIOR_SHIFT as PRIOR_SHIFT
from .study import VARIANTS as VARIANTS
from .study import site_parts as site_parts
from .study import site_study as site_study

__all__ = [
    "CEILING",
    "PRIOR_SHIFT",
    "VARIANTS",
    "calibrate_run",
    "site_calibration",
    "site_images",
    "site_parts",
    "site_study",
]
