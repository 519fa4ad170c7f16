"""KD vs a matched no-KD control: the same student, data, epochs and seeds, with and without a teacher.

    python benchmarks/kd_vs_control.py --teacher RUN --student compact_cnn --data $MEDKD_DATA/chest_xray \\
        --size 128 --epochs 5 --seeds 0 1 2 --out runs/kd-vs-control [--loss kd --temperature 4 --alpha 0.9]

Trains (or resumes) OUT/control-sSEED and OUT/kd-sSEED, evaluates each on the test split (threshold chosen on
validation when it was trained), and prints mean +- sd over seeds of test AUC, accuracy, sensitivity and
specificity, at argmax and at the validation threshold, plus agreement with the teacher.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from medkd.data import DataConfig
from medkd.distillation import DistillConfig, distill
from medkd.engine import TrainConfig, fit
from medkd.evaluation import EvaluationConfig, evaluate_run

REPORTED = ("auc", "accuracy", "recall", "specificity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--student", default="compact_cnn")
    parser.add_argument("--data", required=True)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--loss", default="kd")
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--out", default="runs/kd-vs-control")
    args = parser.parse_args()

    teacher_data = json.loads((Path(args.teacher) / "model.json").read_text())["preprocessing"]
    data = DataConfig(path=args.data, preprocessing={**teacher_data, "size": args.size})
    kd = DistillConfig(teachers=[args.teacher], loss=args.loss, temperature=args.temperature, alpha=args.alpha)
    def test_decisions(folder: Path) -> np.ndarray:
        """argmax decision per test image, from the predictions evaluate_run wrote."""
        table = pd.read_csv(folder / "evaluation" / "test_predictions.csv")
        return table.filter(like="p_").to_numpy().argmax(axis=1)

    evaluate_run(args.teacher, "test", settings=EvaluationConfig(bootstrap_resamples=0), data_path=args.data,
                 show_progress=False)
    teacher_decisions = test_decisions(Path(args.teacher))
    rows = []
    for seed in args.seeds:
        settings = TrainConfig(model=args.student, epochs=args.epochs, batch_size=args.batch_size, seed=seed)
        for arm, folder in (("control", fit(data, settings, Path(args.out) / f"control-s{seed}", show_progress=False)),
                            ("kd", distill(data, settings, kd, Path(args.out) / f"kd-s{seed}", show_progress=False))):
            result = evaluate_run(folder, "test", settings=EvaluationConfig(bootstrap_resamples=0), show_progress=False)
            row = {"arm": arm, "seed": seed, "threshold": result.threshold,
                   **{f"{k}@0.5": result.at_argmax[k] for k in REPORTED},
                   **{f"{k}@val_t": result.at_threshold[k] for k in REPORTED},
                   "teacher_agreement": float((test_decisions(folder) == teacher_decisions).mean())}
            rows.append(row)
            print(row, flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(Path(args.out) / "kd_vs_control.csv", index=False)
    summary = table.drop(columns="seed").groupby("arm").agg(["mean", "std"])
    print(summary.T.to_string(float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
