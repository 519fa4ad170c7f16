"""Deployment: export (ONNX fp32/int8, TorchScript), predict on files with Grad-CAM, serve over HTTP.

Public API: export_run, ExportConfig, ExportReport, ExportError, load_predictor, Predictor, predict_files,
write_predictions, input_root, FilePrediction, create_app, serve, ServeConfig.
"""

from medkd.deploy.config import ExportConfig, ServeConfig
from medkd.deploy.export import ExportError, ExportReport, export_run
from medkd.deploy.predict import FilePrediction, input_root, predict_files, write_predictions
from medkd.deploy.runtime import Predictor, load_predictor
from medkd.deploy.serve import create_app, serve

__all__ = ["ExportConfig", "ExportError", "ExportReport", "FilePrediction", "Predictor", "ServeConfig", "create_app",
           "export_run", "input_root", "load_predictor", "predict_files", "serve", "write_predictions"]
