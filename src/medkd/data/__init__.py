"""Data layer: sources -> decode-once cache -> patient-level splits -> checks.

Public API: DataConfig (with Preprocessing, SplitPolicy), prepare() -> PreparedData, resolve_preprocessing() (an
unset size or channel count: the data's own), check_data(),
decode_file/decode_bytes and preprocess() for inference, where a run's data was found
(record_data_location, run_data_path, run_data_config), and DataError for problems a user can fix.
"""

import lazy_loader

# Submodules load on first use: `import medkd.data` costs nothing until a name is used
# (the public API and its types are in __init__.pyi).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
