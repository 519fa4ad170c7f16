# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .checks import DataReport as DataReport, check_data as check_data
from .checks import print_report as print_report
from .config import DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS, DataConfig as DataConfig, LabelRule as LabelRule, Preprocessing as Preprocessing, SplitPolicy as SplitPolicy, cache_root as cache_root
from .decode import DecodedImage as DecodedImage, decode_bytes as decode_bytes, decode_file as decode_file, is_image_candidate as is_image_candidate, pydicom_messages_to_debug_log as pydicom_messages_to_debug_log
from .location import record_data_location as record_data_location, run_data_config as run_data_config, run_data_path as run_data_path
from .errors import BadImageError as BadImageError, DataError as DataError, NotAnImageError as NotAnImageError, TooManyPixelsError as TooManyPixelsError
from .prepared import PreparedData as PreparedData, labelled_images as labelled_images, prepare as prepare, resolve_size as resolve_size, unlabelled_images as unlabelled_images
from .preprocess import preprocess as preprocess
from .sources import available_sources as available_sources, open_source as open_source, register_source as register_source
from .table import SPLITS as SPLITS, ArrayReader as ArrayReader, FileReader as FileReader, SampleTable as SampleTable, file_stat as file_stat

__all__ = ["ArrayReader", "FileReader", "SampleTable", "BadImageError", "DEFAULT_MAX_PIXELS", "DataConfig", "DataError", "DataReport", "DecodedImage", "LabelRule", "NotAnImageError", "PreparedData", "Preprocessing", "SPLITS", "SplitPolicy", "TooManyPixelsError", "available_sources", "cache_root", "check_data", "decode_bytes", "decode_file", "file_stat", "is_image_candidate", "labelled_images", "open_source", "prepare", "preprocess", "pydicom_messages_to_debug_log", "print_report", "record_data_location", "register_source", "resolve_size", "run_data_config", "run_data_path", "unlabelled_images"]
