# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .config import ExportConfig as ExportConfig
from .config import ServeConfig as ServeConfig
from .export import ExportError as ExportError
from .export import ExportReport as ExportReport
from .export import export_run as export_run
from .export import score_exported as score_exported
from .predict import FilePrediction as FilePrediction
from .predict import input_root as input_root
from .predict import predict_files as predict_files
from .predict import write_predictions as write_predictions
from .runtime import Predictor as Predictor
from .runtime import load_predictor as load_predictor
from .serve import create_app as create_app
from .serve import serve as serve

__all__ = [
    "ExportConfig",
    "ExportError",
    "ExportReport",
    "FilePrediction",
    "Predictor",
    "ServeConfig",
    "create_app",
    "export_run",
    "score_exported",
    "input_root",
    "load_predictor",
    "predict_files",
    "serve",
    "write_predictions",
]
