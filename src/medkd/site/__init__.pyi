# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .adapt import adapt_batch_norm as adapt_batch_norm
from .adapt import adapt_run as adapt_run
from .adapt import calibrate_run as calibrate_run
from .adapt import fold_prior_shift as fold_prior_shift
from .adapt import prior_shift_run as prior_shift_run
from .adapt import site_calibration as site_calibration
from .adapt import site_images as site_images
from .prior import PriorEstimate as PriorEstimate
from .prior import estimate_site_prior as estimate_site_prior
from .prior import reweighted as reweighted
from .study import CEILING as CEILING
from .study import PRIOR_SHIFT as PRIOR_SHIFT
from .study import VARIANTS as VARIANTS
from .study import site_parts as site_parts
from .study import site_study as site_study

__all__ = [
    "CEILING",
    "PRIOR_SHIFT",
    "PriorEstimate",
    "VARIANTS",
    "adapt_batch_norm",
    "adapt_run",
    "calibrate_run",
    "estimate_site_prior",
    "fold_prior_shift",
    "prior_shift_run",
    "reweighted",
    "site_calibration",
    "site_images",
    "site_parts",
    "site_study",
]
