# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .checks import DataReport as DataReport
from .checks import check_data as check_data
from .checks import print_report as print_report
from .config import DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS
from .config import DataConfig as DataConfig
from .config import LabelRule as LabelRule
from .config import Preprocessing as Preprocessing
from .config import SplitPolicy as SplitPolicy
from .config import cache_root as cache_root
from .decode import DecodedImage as DecodedImage
from .decode import decode_bytes as decode_bytes
from .decode import decode_file as decode_file
from .decode import is_image_candidate as is_image_candidate
from .decode import pydicom_messages_to_debug_log as pydicom_messages_to_debug_log
from .errors import BadImageError as BadImageError
from .errors import DataError as DataError
from .errors import NotAnImageError as NotAnImageError
from .errors import TooManyPixelsError as TooManyPixelsError
from .generated import write_brats_like as write_brats_like
from .location import record_data_location as record_data_location
from .location import run_data_config as run_data_config
from .location import run_data_path as run_data_path
from .prepared import PreparedData as PreparedData
from .prepared import labelled_images as labelled_images
from .prepared import prepare as prepare
from .prepared import resolve_preprocessing as resolve_preprocessing
from .prepared import unlabelled_images as unlabelled_images
from .preprocess import preprocess as preprocess
from .sources import available_sources as available_sources
from .sources import open_source as open_source
from .sources import register_source as register_source
from .sources.nifti_volumes import SLICE_SEPARATOR as SLICE_SEPARATOR
from .sources.nifti_volumes import is_patient_folder as is_patient_folder
from .sources.nifti_volumes import volume_slices as volume_slices
from .table import SPLITS as SPLITS
from .table import ArrayReader as ArrayReader
from .table import FileReader as FileReader
from .table import SampleTable as SampleTable
from .table import file_stat as file_stat

__all__ = [
    "ArrayReader",
    "FileReader",
    "SampleTable",
    "BadImageError",
    "DEFAULT_MAX_PIXELS",
    "DataConfig",
    "DataError",
    "DataReport",
    "DecodedImage",
    "LabelRule",
    "NotAnImageError",
    "PreparedData",
    "Preprocessing",
    "SLICE_SEPARATOR",
    "SPLITS",
    "SplitPolicy",
    "TooManyPixelsError",
    "available_sources",
    "cache_root",
    "check_data",
    "decode_bytes",
    "decode_file",
    "file_stat",
    "is_image_candidate",
    "is_patient_folder",
    "labelled_images",
    "open_source",
    "prepare",
    "preprocess",
    "pydicom_messages_to_debug_log",
    "print_report",
    "record_data_location",
    "register_source",
    "resolve_preprocessing",
    "run_data_config",
    "run_data_path",
    "unlabelled_images",
    "volume_slices",
    "write_brats_like",
]
