"""CPU inference cost of the teacher and the students: PyTorch fp32, ONNX Runtime fp32 and ONNX Runtime int8.

    python benchmarks/deploy_latency.py [--data $MEDKD_DATA/chest_xray] [--size 224] [--threads 2]

Every engine runs the same graph (uint8 images -> normalisation -> model -> softmax) with the same thread
count: batch-1 latency (median, p95 over --repeats calls) and batch-32 throughput. Weights are random (speed
does not depend on them); int8 activation ranges are calibrated on --calibration training images of --data
(generated noise without it). Prints one row per model and engine, with the speed-up over the fp32 teacher.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from medkd.data import DataConfig, prepare
from medkd.deploy.export import evenly_spaced, export_onnx, quantise_int8
from medkd.deploy.graph import ProbabilityModel
from medkd.evaluation import time_inference
from medkd.models import create_model, normalisation

# (label, model name, model arguments); the strided compact_cnn shows where the next speed-up comes from
MODELS = (("resnet50", "resnet50", {}), ("resnet18", "resnet18", {}), ("compact_cnn", "compact_cnn", {}),
          ("compact_cnn stem_stride=2", "compact_cnn", {"stem_stride": 2}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--calibration", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = (1, args.size, args.size)
    if args.data:
        config = DataConfig(path=args.data, preprocessing={"size": args.size, "channels": 1})
        calibration = evenly_spaced(np.asarray(prepare(config).split("train")[0]), args.calibration)
    else:
        calibration = np.random.default_rng(0).integers(0, 256, (args.calibration, *shape), dtype=np.uint8)
    single, batch = calibration[:1], evenly_spaced(calibration, args.batch_size)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, name, model_args in MODELS:
            torch.manual_seed(0)
            mean, std = normalisation(1)
            model = ProbabilityModel(create_model(name, num_classes=2, in_chans=1, **model_args), mean, std).eval()
            model = model.to(memory_format=torch.channels_last)
            with torch.no_grad():
                rows.append((label, "pytorch fp32", *time_inference(
                    lambda x, model=model: model(torch.as_tensor(x).contiguous(memory_format=torch.channels_last)),
                    single, batch, repeats=args.repeats)))
            fp32, int8 = Path(folder) / f"{len(rows)}.onnx", Path(folder) / f"{len(rows)}.int8.onnx"
            export_onnx(model, torch.as_tensor(batch[:2]), fp32, {"architecture": name}, None)
            quantise_int8(fp32, int8, calibration, reduce_range=True)
            for engine, path in (("onnxruntime fp32", fp32), ("onnxruntime int8", int8)):
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                rows.append((label, engine, *time_inference(lambda x, session=session: session.run(None, {"images": x}),
                                                           single, batch, repeats=args.repeats)))
            print(*(f"{v:.2f}" if isinstance(v, float) else v for v in rows[-1]), flush=True)

    teacher = rows[0][2]
    print(f"\n{args.size} px, {args.threads} threads, batch-1 latency over {args.repeats} calls, "
          f"batch {args.batch_size} throughput")
    print("| model | engine | batch 1 median ms | batch 1 p95 ms | batch 32 images/s | "
          "batch-1 speed-up vs resnet50 fp32 |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, engine, median, p95, throughput in rows:
        print(f"| {name} | {engine} | {median:.2f} | {p95:.2f} | {throughput:,.0f} | {teacher / median:.1f}x |")


if __name__ == "__main__":
    main()
