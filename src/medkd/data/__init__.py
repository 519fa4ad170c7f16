"""Data layer: sources -> decode-once cache -> patient-level splits -> checks.

Public API: DataConfig (with Preprocessing, SplitPolicy), prepare() -> PreparedData, check_data(),
decode_file/decode_bytes and preprocess() for inference, and DataError for problems a user can fix.
"""

from medkd.data.checks import DataReport, check_data
from medkd.data.config import DataConfig, LabelRule, Preprocessing, SplitPolicy
from medkd.data.decode import DecodedImage, decode_bytes, decode_file
from medkd.data.errors import BadImageError, DataError, NotAnImageError, TooManyPixelsError
from medkd.data.preprocess import preprocess
from medkd.data.prepared import PreparedData, prepare, unlabelled_images
from medkd.data.sources import available_sources, open_source, register_source

__all__ = [
    "BadImageError", "DataConfig", "DataError", "DataReport", "DecodedImage", "LabelRule", "NotAnImageError",
    "PreparedData", "Preprocessing", "SplitPolicy", "TooManyPixelsError", "available_sources", "check_data",
    "decode_bytes", "decode_file", "open_source", "prepare", "preprocess", "register_source", "unlabelled_images",
]
