"""The machine and software a study ran on, for its report (results mean little without them)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from medkd.device import native_cpu_bf16

PACKAGES = ("medkd", "torch", "torchvision", "lightning", "torchmetrics", "scikit-learn", "numpy", "timm")


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; elsewhere what `platform` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_environment() -> dict:
    """Python, OS, CPU (cores, torch threads), GPU if any, and the versions of the packages that matter."""
    import torch

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue  # optional packages (timm) may be absent
    return {
        "python": platform.python_version(),
        "os": platform.platform(),
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": native_cpu_bf16(),  # decides whether precision: auto trains in bf16 on this CPU
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "packages": versions,
    }
