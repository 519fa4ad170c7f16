"""Deployment: export (ONNX fp32/int8, TorchScript), predict on files with Grad-CAM, serve over HTTP.

Public API: export_run, ExportConfig, ExportReport, ExportError, load_predictor, Predictor, predict_files,
write_predictions, input_root, FilePrediction, create_app, serve, ServeConfig.
"""

import lazy_loader

# Submodules load on first use: `import medkd.deploy` costs nothing until a name is used
# (the public API and its types are in __init__.pyi).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
