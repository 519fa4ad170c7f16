# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .adapt import adapt_batch_norm as adapt_batch_norm, adapt_run as adapt_run, calibrate_run as calibrate_run, site_calibration as site_calibration, site_images as site_images
from .study import CEILING as CEILING, SITE_STUDY as SITE_STUDY, VARIANTS as VARIANTS, site_parts as site_parts, site_study as site_study

__all__ = ["CEILING", "SITE_STUDY", "VARIANTS", "adapt_batch_norm", "adapt_run", "calibrate_run", "site_calibration", "site_images", "site_parts", "site_study"]
