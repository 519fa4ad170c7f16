"""Data layer: sources -> decode-once cache -> patient-level splits -> checks.

Public API: DataConfig (with Preprocessing, SplitPolicy), prepare() -> PreparedData, resolve_size() (an unset size:
the arrays' own), check_data(),
decode_file/decode_bytes and preprocess() for inference, where a run's data was found
(record_data_location, run_data_path, run_data_config), and DataError for problems a user can fix.
"""

from medkd.data.checks import DataReport, check_data
from medkd.data.checks import print_report
from medkd.data.config import DEFAULT_MAX_PIXELS, DataConfig, LabelRule, Preprocessing, SplitPolicy, cache_root
from medkd.data.decode import DecodedImage, decode_bytes, decode_file, is_image_candidate
from medkd.data.location import record_data_location, run_data_config, run_data_path
from medkd.data.errors import BadImageError, DataError, NotAnImageError, TooManyPixelsError
from medkd.data.prepared import PreparedData, labelled_images, prepare, resolve_size, unlabelled_images
from medkd.data.preprocess import preprocess
from medkd.data.sources import available_sources, open_source, register_source
from medkd.data.table import SPLITS, file_stat

__all__ = [
    "DEFAULT_MAX_PIXELS", "SPLITS", "BadImageError", "DataConfig", "DataError", "DataReport", "DecodedImage", "LabelRule", "NotAnImageError",
    "PreparedData", "Preprocessing", "SplitPolicy", "TooManyPixelsError", "available_sources", "cache_root", "check_data",
    "decode_bytes", "decode_file", "file_stat", "is_image_candidate", "labelled_images", "open_source", "prepare", "preprocess",
    "print_report", "record_data_location", "resolve_size", "register_source", "run_data_config", "run_data_path", "unlabelled_images",
]
