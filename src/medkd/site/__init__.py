"""A model at a new site: re-fit calibration and threshold on the site's labelled images (calibrate_run),
re-estimate batch-norm statistics on its unlabelled images (adapt_run, AdaBN), and the site-calibration
protocol over the official test split (site_study), reported apart from the main results.

Public API: calibrate_run, adapt_run, site_calibration, adapt_batch_norm, site_images, site_study, site_parts,
VARIANTS, CEILING (its files: medkd.files.SITE_STUDY, ...).
"""

import lazy_loader

# Submodules load on first use: `import medkd.site` costs nothing until a name is used
# (the public API and its types are in __init__.pyi).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
