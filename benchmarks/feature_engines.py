"""Images per second of a frozen ImageNet backbone's features on this CPU (what linear probes and probe teachers
spend their time on): PyTorch at batch 64 (medkd's batch before the device policy sized it), PyTorch and ONNX
Runtime at the policy's CPU batch (medkd.device.inference_batch_size), fp32, torch's thread count.

    python benchmarks/feature_engines.py [--models efficientnet_lite0:224 efficientnet_lite1:240] [--images 256]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from medkd.device import inference_batch_size
from medkd.environment import describe_environment
from medkd.evaluation import predict_logits
from medkd.models import create_model, headless, normalise

MEAN, STD = [0.5], [0.5]  # EfficientNet-Lite's normalisation, grey


def images_per_second(run, images: np.ndarray, batch: int) -> float:
    run(images[:batch])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(images), batch):
        run(images[start:start + batch])
    return len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0:224", "efficientnet_lite1:240",
                                                        "efficientnet_lite2:260", "efficientnet_lite0:128"])
    parser.add_argument("--images", type=int, default=256)
    args = parser.parse_args()
    environment = describe_environment()
    print(f"{environment['cpu']}, {torch.get_num_threads()} torch threads, native bf16: "
          f"{environment.get('cpu_native_bf16')}; {args.images} grey images each")
    print(f"{'model':<20} {'px':>4} {'torch b64':>10} {'batch':>6} {'torch':>8} {'onnxruntime':>12} {'ratio':>6}")
    rng = np.random.default_rng(0)
    for entry in args.models:
        name, size = entry.split(":")
        size = int(size)
        images = rng.integers(0, 256, (args.images, 1, size, size), dtype=np.uint8)
        backbone = headless(create_model(name, num_classes=2, in_chans=1, weights="imagenet")).eval()
        backbone = backbone.to(memory_format=torch.channels_last)
        batch = inference_batch_size(torch.device("cpu"), images.shape)

        def torch_run(chunk: np.ndarray, backbone=backbone) -> None:
            predict_logits(backbone, chunk, mean=MEAN, std=STD, batch_size=len(chunk))

        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = Path(tmp) / "backbone.onnx"
            example = torch.zeros(2, 1, size, size)
            torch.onnx.export(backbone, (example,), str(path), input_names=["inputs"], output_names=["features"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, verbose=False)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

            def onnx_run(chunk: np.ndarray, session=session) -> None:
                session.run(None, {"inputs": normalise(chunk, MEAN, STD).numpy()})

            big = images_per_second(torch_run, images, 64)
            small = images_per_second(torch_run, images, batch)
            onnx = images_per_second(onnx_run, images, batch)
        print(f"{name:<20} {size:>4} {big:>10.1f} {batch:>6} {small:>8.1f} {onnx:>12.1f} {onnx / small:>6.2f}",
              flush=True)


if __name__ == "__main__":
    main()
