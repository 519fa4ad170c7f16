"""A model at a new site: re-fit calibration and threshold on the site's labelled images (calibrate_run), read a
site's images as the model reads them (site_images; the unlabelled methods, AdaBN and prior shift, are derived runs:
medkd.derive), and the site-calibration protocol over the official test split (site_study), reported apart from
the main results.

Public API: calibrate_run, site_calibration, site_images, site_study, site_parts, VARIANTS, CEILING (its files:
medkd.files.SITE_STUDY, ...).
"""

import lazy_loader

# Submodules load on first use: `import medkd.site` costs nothing until a name is used
# (the public API and its types are in __init__.pyi).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
