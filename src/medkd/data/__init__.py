"""Data layer: sources -> decode-once cache -> patient-level splits -> checks.

Public API: DataConfig (with Preprocessing, SplitPolicy), prepare() -> PreparedData, check_data(),
preprocess() for inference, and DataError for problems a user can fix.
"""

from medkd.data.checks import DataReport, check_data
from medkd.data.config import DataConfig, LabelRule, Preprocessing, SplitPolicy
from medkd.data.errors import BadImageError, DataError
from medkd.data.preprocess import preprocess
from medkd.data.prepared import PreparedData, prepare
from medkd.data.sources import available_sources, open_source, register_source

__all__ = [
    "BadImageError", "DataConfig", "DataError", "DataReport", "LabelRule", "PreparedData", "Preprocessing",
    "SplitPolicy", "available_sources", "check_data", "open_source", "prepare", "preprocess", "register_source",
]
