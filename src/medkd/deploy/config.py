"""Validated settings of export and serving."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medkd.settings import StrictModel


class ExportConfig(StrictModel):
    """How a run is exported: ONNX (optionally int8) or TorchScript, and how the copy is checked."""

    format: Literal["onnx", "torchscript"] = "onnx"
    int8: bool = Field(False, description="onnx: also write a statically quantised int8 model")
    opset: int | None = Field(None, ge=17, description="ONNX opset; default: the exporter's")
    check_images: int = Field(128, ge=1, description="validation images compared between PyTorch and the export")
    calibration_images: int = Field(300, ge=1, description="int8: training images the activation ranges come from")
    int8_reduce_range: bool = Field(True, description="7-bit weights: avoids the saturation of uint8 x int8 "
                                                       "products on x86 CPUs without VNNI (AVX2, plain AVX-512)")
    max_int8_auc_drop: float = Field(0.01, ge=0, description="int8: largest allowed fall of validation AUC "
                                                        "(fp32 -> int8)")
    on_int8_drop: Literal["fail", "warn"] = Field(
        "fail", description="what a larger fall does: fail keeps no int8 file")
    latency_repeats: int = Field(50, ge=0, description="batch-1 runs timed per exported model on the CPU (after 10 "
                                                       "warm-up runs); 0: no latency measurement")


class ServeConfig(StrictModel):
    """The HTTP service's limits; every request over one gets a 4xx answer that says which."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_upload_bytes: int = Field(20_000_000, gt=0)
    max_pixels: int = Field(50_000_000, gt=0, description="decoded width x height; larger uploads are refused")
    timeout_seconds: float = Field(30.0, gt=0, description="a prediction taking longer answers 504")
    token: str | None = Field(None, description="when set, /predict needs 'Authorization: Bearer <token>'")
    heatmap: bool = Field(True, description="return a Grad-CAM overlay when the PyTorch model is available")
