"""Runs derived from a finished run, nothing trained: WiSE-FT, AdaBN, prior shift; a method registered from
outside medkd is one class and `register_derived_run("name")`.

Public API: derive_run(), DeriveInputs, DeriveSettings, DerivedRunMethod, register_derived_run, DERIVED_RUNS,
derive_settings(), write_derived_run(); the prior-shift EM (estimate_site_prior, reweighted, training_prior,
PriorEstimate) for the site study.
"""

from medkd.derive import adabn, prior_shift, wise_ft  # noqa: F401  (each registers itself)
from medkd.derive.base import (
    DERIVED_RUNS,
    DerivedRunMethod,
    DeriveInputs,
    DeriveSettings,
    derive_run,
    derive_settings,
    register_derived_run,
    write_derived_run,
)
from medkd.derive.prior_shift import PriorEstimate, estimate_site_prior, fold_prior_shift, reweighted, training_prior
from medkd.derive.wise_ft import WiseFTError

__all__ = ["DERIVED_RUNS", "DeriveInputs", "DeriveSettings", "DerivedRunMethod", "PriorEstimate", "WiseFTError",
           "derive_run", "derive_settings", "estimate_site_prior", "fold_prior_shift", "register_derived_run",
           "reweighted", "training_prior", "write_derived_run"]
