"""Which features make an out-of-distribution guard work for a trained run: the share of the official test X-rays
it flags (all, and per class) and the share of images that are not chest X-rays it flags, for each feature kind
the guard can read (medkd.models.FEATURE_KINDS), fitted on the train split (optionally with augmented
views), its threshold passing `--val-pass-rate` of validation, as medkd fits it at the end of training.

    python benchmarks/guard_features.py RUN_FOLDER [--views 0 4] [--val-pass-rate 0.95 0.99]

Not-chest-X-rays: the test suite's set (tests/test_guard.py: scikit-image's photos and crops, noise, blank
frames, rendered text, pydicom's CT and MR), scored by the guard alone (predict also flags blank images and
DICOM files of another modality by rule, whatever the score).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import yaml  # noqa: E402
from test_guard import write_not_chest_xrays  # noqa: E402

from medkd.data import decode_file, prepare, preprocess, run_data_config  # noqa: E402
from medkd.engine import TrainConfig, augmented_view, build_augmentation  # noqa: E402
from medkd.evaluation import GuardConfig, fit_guard, predict_with_features  # noqa: E402
from medkd.files import CONFIG  # noqa: E402
from medkd.models import FEATURE_KINDS, load_model  # noqa: E402


def guard_features(model, images, card, kind):
    return predict_with_features(model, images, card, kind)[1].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--views", type=int, nargs="+", default=[0, 4], help="augmented train views fitted on")
    parser.add_argument("--val-pass-rate", type=float, nargs="+", default=[0.95, 0.99])
    args = parser.parse_args()
    model, card = load_model(args.run)
    data = prepare(run_data_config(args.run), show_progress=False)
    settings = TrainConfig.model_validate(yaml.safe_load((args.run / CONFIG).read_text())["train"])
    augmentation = build_augmentation(settings.augment)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_not_chest_xrays(Path(tmp) / "others")
        # Blank frames and DICOM of another modality are flagged by rule in predict: the guard's score is for the rest.
        files = [f for f in files if not f.name.startswith("blank") and f.suffix != ".dcm"]
        others = np.stack([preprocess(decode_file(f, max_pixels=10**8).image, data.config.preprocessing)
                           for f in files])
    test_images, test_labels = data.split("test")
    print(f"{args.run}: {card.architecture} at {data.config.preprocessing.size} px; test {len(test_labels)} "
          f"X-rays, {len(others)} not-chest-X-rays")
    print(f"{'features':<12} {'views':>5} {'dim':>5} {'val pass':>8} {'test flagged':>13} " +
          " ".join(f"{name:>10}" for name in data.classes) + f" {'others':>8} {'margin':>7}")
    for kind in FEATURE_KINDS:
        features = {split: guard_features(model, data.split(split)[0], card, kind) for split in ("train", "val")}
        test, other = guard_features(model, test_images, card, kind), guard_features(model, others, card, kind)
        for views in args.views:
            train, labels = [features["train"]], [data.split("train")[1]]
            for view in range(views):  # the views fit() draws for train_views (seeded per image and view)
                augmented = augmented_view(augmentation, data.split("train")[0], settings.seed, view)
                train.append(guard_features(model, augmented.numpy(), card, kind))
                labels.append(data.split("train")[1])
            for rate in args.val_pass_rate:
                guard = fit_guard(np.concatenate(train), np.concatenate(labels), features["val"],
                                  GuardConfig(val_pass_rate=rate, features=kind))
                flagged = ~guard.in_distribution(guard.scores(test))
                per_class = [flagged[test_labels == k].mean() for k in range(len(data.classes))]
                other_scores = guard.scores(other)
                caught, margin = (other_scores > guard.threshold).mean(), other_scores.min() / guard.threshold
                print(f"{kind:<12} {views:>5} {test.shape[1]:>5} {rate:>8.1%} {flagged.mean():>13.1%} "
                      + " ".join(f"{share:>10.1%}" for share in per_class) + f" {caught:>8.1%} {margin:>7.2f}",
                      flush=True)


if __name__ == "__main__":
    main()
