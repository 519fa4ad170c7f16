"""A model at a new site: re-fit calibration and threshold on the site's labelled images (calibrate_run),
re-estimate batch-norm statistics on its unlabelled images (adapt_run, AdaBN), and the site-calibration
protocol over the official test split (site_study), reported apart from the main results.

Public API: calibrate_run, adapt_run, site_calibration, adapt_batch_norm, site_images, site_study, site_parts,
SITE_STUDY, VARIANTS, CEILING.
"""

from medkd.site.adapt import adapt_batch_norm, adapt_run, calibrate_run, site_calibration, site_images
from medkd.site.study import CEILING, SITE_STUDY, VARIANTS, site_parts, site_study

__all__ = ["CEILING", "SITE_STUDY", "VARIANTS", "adapt_batch_norm", "adapt_run", "calibrate_run", "site_calibration",
           "site_images", "site_parts", "site_study"]
