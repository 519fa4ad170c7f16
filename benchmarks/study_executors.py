"""Wall time of one study run one run after another (the sequential executor) and as Ray tasks.

    python benchmarks/study_executors.py [--workers 2] [--epochs 3] [--out /tmp/executors]

The study: a teacher and its distilled student over 2 seeds (4 runs) on a generated BraTS-like cohort (4 channels,
48 px, 20 patients). Sequentially each run uses every CPU thread; on Ray, `--workers` runs at once with
(CPUs / workers) threads each. Both studies start from an empty study folder and a warm decode cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from medkd.config import load_recipe
from medkd.data import prepare, write_brats_like
from medkd.runner import RayExecutor, run_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/medkd_executors"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    data = write_brats_like(args.out / "cohort", "nifti", patients=20)
    cpus = os.cpu_count() or 1
    recipe_file = args.out / "study.yaml"
    recipe_file.write_text(f"""name: executors
data: {{path: {data}, cache_dir: {args.out / 'cache'}, split: {{min_val_size: 1}}}}
train: {{model: compact_cnn, model_args: {{width: 16}}, epochs: {args.epochs}, batch_size: 32, precision: "32"}}
evaluation: {{bootstrap_resamples: 0}}
stages:
  - name: teacher
    train: {{model_args: {{width: 32}}}}
  - name: student
    distill: {{teachers: [teacher], temperature: 4.0}}
seeds: 2
""")
    recipe = load_recipe(recipe_file)
    prepare(recipe.data, show_progress=False)  # the decode cache, shared by both
    timings = {}
    start = time.perf_counter()
    run_study(recipe, args.out / "sequential", show_progress=False)
    timings["sequential"] = time.perf_counter() - start
    start = time.perf_counter()
    run_study(recipe, args.out / "ray", show_progress=False, executor=RayExecutor(cpus_per_run=cpus / args.workers))
    timings[f"ray, {args.workers} workers of {cpus / args.workers:g} threads"] = time.perf_counter() - start
    print(f"4 runs ({args.epochs} epochs each) on {cpus} CPUs")
    for name, seconds in timings.items():
        print(f"  {name:<32} {seconds:7.1f} s  ({timings['sequential'] / seconds:.2f}x)")


if __name__ == "__main__":
    main()
