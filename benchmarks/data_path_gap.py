"""Why the student scores higher on PneumoniaMNIST than on the 224 px Kermany copy: one factor at a time.

    python benchmarks/data_path_gap.py --out GAP [--data $MEDKD_DATA] [--size 28]
    medkd run GAP/recipe.yaml --out GAP/study --seeds 3      # the controlled comparison (resumable)
    python benchmarks/data_path_gap.py --out GAP --analyse    # each run on both copies' test images

PneumoniaMNIST (MedMNIST) and `chest_xray` hold the same images: MedMNIST centre-cropped each original to a
square and resized it once to 28 px; the shared copy squashed each original to 224 x 224 (aspect ratio lost) and
re-encoded it as JPEG. Each PneumoniaMNIST image is matched to its Kermany file (within its label, best
correlation over centre crops of the squashed copy's width), which gives PneumoniaMNIST images their patients and
each original's framing (the matched crop fraction is 1 / the original's width/height). The script prints what
the matching finds (the framing by class and split: squashing turns it into a class signal that shifts between
train and test) and writes one NumPy folder per data path, the same student and schedule on each:

  pm             PneumoniaMNIST as published: official splits (validation drawn per image)
  pm_patient_val PneumoniaMNIST, validation = the images of the main job's validation patients (per patient)
  k_chain        the 224 copy as the main job reads it (JPEG draft decode, then bilinear), validation by patient
  k_image_val    k_chain's images, validation drawn per image (as many images, stratified)
  k_one_step     the 224 copy fully decoded, resized once (no JPEG draft decode)
  k_matched_crop the 224 copy, each image cropped to its matched fraction of the width before resizing: the
                 squashing undone, as far as the squashed copy allows (an analysis: it needs PneumoniaMNIST's
                 crops to know each fraction, which no user of the 224 copy has)
(A width jitter in training, what a user of the squashed copy could do, was measured as a seventh stage at commit
81af129, augment.stretch 0.25: no gain, docs/results.md; the option is not kept.)

The recipe trains the main job's control student (compact_cnn, no teacher, 30 epochs) on each. `--analyse` scores
every finished run on both copies' test images, at its own validation threshold, and on the test X-rays both
copies hold (matched as above, over crops of width and height): the two test splits are not the same images
(GAP/analysis.csv).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from medkd.data import DataConfig, prepare

CROP_FRACTIONS = np.round(np.arange(0.50, 1.0001, 0.025), 3)  # of the squashed copy's width
MATCH_SIDE = 28  # PneumoniaMNIST's side: where images of both copies are compared
PAIR_CORRELATION = 0.95  # a PneumoniaMNIST test image and a Kermany copy test image are the same X-ray above this
VARIANTS = ("pm", "pm_patient_val", "k_chain", "k_image_val", "k_one_step", "k_matched_crop")


def standardised(rows: np.ndarray) -> np.ndarray:
    """Each row minus its mean, divided by its norm: dot products are correlations."""
    rows = rows.astype(np.float32) - rows.mean(axis=-1, keepdims=True)
    return rows / (np.linalg.norm(rows, axis=-1, keepdims=True) + 1e-6)


def width_crops(images: list[Image.Image], side: int) -> np.ndarray:
    """(fractions, N, side * side): each image's central fraction of the width (full height) resized to side."""
    out = np.zeros((len(CROP_FRACTIONS), len(images), side * side), np.float32)
    for i, image in enumerate(images):
        width, height = image.size
        for j, fraction in enumerate(CROP_FRACTIONS):
            left = width * (1 - fraction) / 2
            crop = image.resize((side, side), Image.Resampling.BILINEAR, box=(left, 0, width - left, height))
            out[j, i] = np.asarray(crop, np.float32).ravel()
    return out


def match(pm_images: np.ndarray, pm_labels: np.ndarray, crops: np.ndarray, labels: np.ndarray):
    """Best Kermany image and crop fraction for each PneumoniaMNIST image, and the reverse, within labels."""
    query = standardised(pm_images.reshape(len(pm_images), -1))
    candidates = standardised(crops)
    forward = np.full(len(query), -np.inf), np.zeros(len(query), int), np.zeros(len(query))
    backward = np.full(len(labels), -np.inf), np.zeros(len(labels), int), np.zeros(len(labels))
    other_label = pm_labels[:, None] != labels[None, :]
    for j, fraction in enumerate(CROP_FRACTIONS):
        scores = query @ candidates[j].T
        scores[other_label] = -np.inf
        for (best, index, frac), axis in ((forward, 1), (backward, 0)):
            arg = scores.argmax(axis=axis)
            value = scores.max(axis=axis)
            better = value > best
            best[better], index[better], frac[better] = value[better], arg[better], fraction
    return forward, backward


def describe_framing(name: str, fractions: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Median original width/height by class, from the matched crop fractions."""
    found = {}
    for label, cls in enumerate(classes):
        aspect = 1 / fractions[labels == label]
        found[cls] = {"median_aspect": round(float(np.median(aspect)), 3),
                      "iqr": [round(float(q), 3) for q in np.quantile(aspect, [0.25, 0.75])]}
    print(f"  {name}: original width/height by class " +
          ", ".join(f"{cls} {v['median_aspect']} (IQR {v['iqr'][0]}-{v['iqr'][1]})" for cls, v in found.items()))
    return found


def aspect_auc(fractions: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict:
    """How well the original's framing alone separates the classes (AUC of 1 / fraction), per split."""
    from sklearn.metrics import roc_auc_score

    return {split: round(float(roc_auc_score(labels[split], 1 / fractions[split])), 4) for split in fractions}


def write_folder(folder: Path, splits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]],
                 classes: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, (images, labels, patients) in splits.items():
        np.save(folder / f"X_{split}.npy", np.ascontiguousarray(images))
        np.save(folder / f"y_{split}.npy", labels.astype(np.int64))
        if patients is not None:
            np.save(folder / f"patient_{split}.npy", np.asarray(patients).astype(str))
    (folder / "classes.txt").write_text("\n".join(classes) + "\n")


def build(data_root: Path, out: Path, side: int) -> None:
    npz = np.load(data_root / "medmnist" / "pneumoniamnist.npz")
    config = DataConfig(path=str(data_root / "chest_xray"), source="folder",
                        preprocessing={"size": side, "channels": 1, "resize": "squash"},
                        split={"seed": 0, "val_fraction": 0.1, "min_val_size": 100})
    prepared = prepare(config)
    samples = prepared.samples
    classes = prepared.classes
    chain = np.asarray(prepared.decoded.images[samples["row"].to_numpy()])[:, 0]  # (N, side, side)
    labels = samples["label"].to_numpy()
    print(f"Kermany copy: {len(samples)} images, splits {samples['split'].value_counts().to_dict()}")
    full = [prepared.source.reader.read(ref, max_pixels=config.max_pixels, draft_size=None).image.convert("L")
            for ref in samples["ref"]]
    one_step = np.stack([np.asarray(image.resize((side, side), Image.Resampling.BILINEAR)) for image in full])
    crops = width_crops(full, MATCH_SIDE)

    # Match within the source split: PneumoniaMNIST test <-> Kermany test, train + val <-> Kermany train.
    is_test = (samples["source_split"] == "test").to_numpy()
    pm = {split: (npz[f"{split}_images"], npz[f"{split}_labels"][:, 0].astype(np.int64)) for split in
          ("train", "val", "test")}
    report: dict = {"framing": {}}
    kermany_fraction = np.zeros(len(samples))
    pm_match: dict[str, np.ndarray] = {}
    for pm_splits, mask in ((("test",), is_test), (("train", "val"), ~is_test)):
        images = np.concatenate([pm[s][0] for s in pm_splits])
        pm_labels = np.concatenate([pm[s][1] for s in pm_splits])
        index = np.flatnonzero(mask)
        (corr, best, fraction), (_, _, k_fraction) = match(images, pm_labels, crops[:, index], labels[index])
        kermany_fraction[index] = k_fraction
        start = 0
        for s in pm_splits:
            stop = start + len(pm[s][1])
            pm_match[s] = index[best[start:stop]]
            report.setdefault("match", {})[s] = {
                "images": int(stop - start), "distinct_kermany_files": int(len(set(best[start:stop]))),
                "correlation_quantiles_0_1_5_50": [round(float(q), 3) for q in
                                                   np.quantile(corr[start:stop], [0, 0.01, 0.05, 0.5])]}
            report["framing"][f"pneumoniamnist_{s}"] = describe_framing(f"PneumoniaMNIST {s}", fraction[start:stop],
                                                                        pm[s][1], classes)
            start = stop
    for split in ("train", "val", "test"):
        chosen = (samples["split"] == split).to_numpy()
        report["framing"][f"kermany_{split}"] = describe_framing(f"Kermany {split}", kermany_fraction[chosen],
                                                                 labels[chosen], classes)
    report["framing_auc"] = aspect_auc(
        {s: kermany_fraction[(samples["split"] == s).to_numpy()] for s in ("train", "val", "test")},
        {s: labels[(samples["split"] == s).to_numpy()] for s in ("train", "val", "test")})
    print(f"  class AUC of the original's width/height alone (Kermany splits): {report['framing_auc']}")
    print("  matches:", json.dumps(report["match"]))

    patients = samples["patient"].to_numpy().astype(str)
    k_split = samples["split"].to_numpy()

    def kermany(images: np.ndarray, split_of: np.ndarray) -> dict:
        return {s: (images[split_of == s][:, None], labels[split_of == s], patients[split_of == s])
                for s in ("train", "val", "test")}

    write_folder(out / "pm", {s: (pm[s][0][:, None], pm[s][1], None) for s in pm}, classes)
    pooled = np.concatenate([pm["train"][0], pm["val"][0]])
    pooled_labels = np.concatenate([pm["train"][1], pm["val"][1]])
    pooled_patients = patients[np.concatenate([pm_match["train"], pm_match["val"]])]
    val_patients = set(patients[k_split == "val"])
    in_val = np.isin(pooled_patients, list(val_patients))
    write_folder(out / "pm_patient_val", {
        "train": (pooled[~in_val][:, None], pooled_labels[~in_val], pooled_patients[~in_val]),
        "val": (pooled[in_val][:, None], pooled_labels[in_val], pooled_patients[in_val]),
        "test": (pm["test"][0][:, None], pm["test"][1], patients[pm_match["test"]])}, classes)
    write_folder(out / "k_chain", kermany(chain, k_split), classes)
    image_split = k_split.copy()
    rng = np.random.default_rng(0)
    pool = np.flatnonzero(k_split != "test")
    image_split[pool] = "train"
    for label in range(len(classes)):  # as many val images of each class as the patient split has
        wanted = int(((k_split == "val") & (labels == label)).sum())
        image_split[rng.choice(pool[labels[pool] == label], wanted, replace=False)] = "val"
    write_folder(out / "k_image_val", kermany(chain, image_split), classes)
    write_folder(out / "k_one_step", kermany(one_step, k_split), classes)
    matched = np.stack([np.asarray(image.resize((side, side), Image.Resampling.BILINEAR, box=(
        image.size[0] * (1 - f) / 2, 0, image.size[0] * (1 + f) / 2, image.size[1])))
        for image, f in zip(full, kermany_fraction)])
    write_folder(out / "k_matched_crop", kermany(matched, k_split), classes)
    for name in VARIANTS:
        sizes = {s: int(len(np.load(out / name / f"y_{s}.npy"))) for s in ("train", "val", "test")}
        report.setdefault("sizes", {})[name] = sizes
    print("  folder sizes:", json.dumps(report["sizes"]))
    (out / "matching.json").write_text(json.dumps(report, indent=1))
    write_recipe(out, side)


def write_recipe(out: Path, side: int) -> None:
    """The main job's control student on every variant: same model, schedule, augmentation and seeds."""
    recipe = {
        "name": "data_path_gap",
        "data": {"path": str(out / "k_chain"), "source": "numpy",
                 "preprocessing": {"size": side, "channels": 1},
                 "split": {"seed": 0, "min_val_size": 100}},
        "train": {"model": "compact_cnn", "weights": "none", "transfer": "scratch", "epochs": 30, "batch_size": 32,
                  "runtime": {"images_on_device": True}, "guard": {"method": "none"}},
        "stages": [{"name": name, "data": {"path": str(out / name)}} for name in VARIANTS],
        "seeds": 3,
        "comparisons": [["pm", "pm_patient_val"], ["k_chain", "k_image_val"], ["k_chain", "k_one_step"],
                        ["k_matched_crop", "k_chain"], ["pm", "k_chain"]],
    }
    (out / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    print(f"wrote {out / 'recipe.yaml'}: medkd run {out / 'recipe.yaml'} --out {out / 'study'} --seeds 3")


def test_pairs(data_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """For each PneumoniaMNIST test image, its Kermany test image (row in the Kermany test split's order, as
    k_chain's X_test holds it) where one matches (correlation > PAIR_CORRELATION over centre crops of width and
    height), else -1; and the best correlation found."""
    config = DataConfig(path=str(data_root / "chest_xray"), source="folder",
                        preprocessing={"size": MATCH_SIDE, "channels": 1, "resize": "squash"},
                        split={"seed": 0, "val_fraction": 0.1, "min_val_size": 100})
    prepared = prepare(config, show_progress=False)
    test = prepared.samples[prepared.samples["split"] == "test"]
    images = [prepared.source.reader.read(ref, max_pixels=config.max_pixels, draft_size=None).image.convert("L")
              for ref in test["ref"]]
    pm_images = np.load(data_root / "medmnist" / "pneumoniamnist.npz")["test_images"]
    query = standardised(pm_images.reshape(len(pm_images), -1))
    best, index = np.full(len(query), -np.inf), np.zeros(len(query), int)
    for width in CROP_FRACTIONS:
        for height in (1.0, 0.9, 0.8, 0.7, 0.6):  # a few originals are taller than wide: MedMNIST cut their height
            crops = np.stack([np.asarray(image.resize((MATCH_SIDE, MATCH_SIDE), Image.Resampling.BILINEAR, box=(
                image.size[0] * (1 - width) / 2, image.size[1] * (1 - height) / 2,
                image.size[0] * (1 + width) / 2, image.size[1] * (1 + height) / 2)), np.float32).ravel()
                for image in images])
            scores = query @ standardised(crops).T
            value, arg = scores.max(axis=1), scores.argmax(axis=1)
            better = value > best
            best[better], index[better] = value[better], arg[better]
    return np.where(best > PAIR_CORRELATION, index, -1), best


def analyse(data_root: Path, out: Path) -> None:
    """Every finished run scored on both copies' test images (the library's predictions, calibrated, at the run's
    own validation threshold; its study files untouched), overall and on the pairs of test images both copies
    hold, and on the images only one of them holds."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from medkd.evaluation import calibrated, predict_run_logits
    from medkd.models import load_model

    pairs_file = out / "test_pairs.npy"
    if not pairs_file.exists():
        pairs, best = test_pairs(data_root)
        np.save(pairs_file, pairs)
        print(f"test pairs: {int((pairs >= 0).sum())} of {len(pairs)} PneumoniaMNIST test images have their Kermany "
              f"image (correlation > {PAIR_CORRELATION}); best correlation quantiles 0/1/5/50 %: "
              f"{np.quantile(best, [0, 0.01, 0.05, 0.5]).round(3).tolist()}")
    pairs = np.load(pairs_file)
    tests = {name: (np.load(out / name / "X_test.npy"), np.load(out / name / "y_test.npy"))
             for name in ("pm", "k_chain")}
    paired = pairs >= 0
    k_paired = np.zeros(len(tests["k_chain"][1]), bool)
    k_paired[pairs[paired]] = True
    print(f"labels of the unpaired images: PneumoniaMNIST only {np.bincount(tests['pm'][1][~paired], minlength=2)}, "
          f"Kermany copy only {np.bincount(tests['k_chain'][1][~k_paired], minlength=2)} (NORMAL, PNEUMONIA)")
    rows = []
    for run in sorted((out / "study").glob("*/seed*")):
        if not (run / "model.json").exists():
            continue
        model, card = load_model(run)
        p = {name: np.asarray(calibrated(predict_run_logits(model, images, card), card.temperature))[:, 1]
             for name, (images, _) in tests.items()}
        y_pm, y_k = tests["pm"][1], tests["k_chain"][1]
        # the same X-rays in both copies, in PneumoniaMNIST's order
        pair_labels = y_pm[paired]
        row = {"stage": run.parent.name, "seed": int(run.name.removeprefix("seed")), "threshold": card.threshold,
               "auc_pm_test": roc_auc_score(y_pm, p["pm"]), "auc_k_test": roc_auc_score(y_k, p["k_chain"]),
               "auc_pairs_pm_images": roc_auc_score(pair_labels, p["pm"][paired]),
               "auc_pairs_k_images": roc_auc_score(pair_labels, p["k_chain"][pairs[paired]])}
        scored = {"pm": (y_pm, p["pm"]), "k": (y_k, p["k_chain"]),
                  "pairs_pm": (y_pm[paired], p["pm"][paired]),
                  "pairs_k": (y_k[pairs[paired]], p["k_chain"][pairs[paired]])}
        for name, (y, probs) in scored.items():
            said = probs >= card.threshold
            row[f"acc_{name}"] = float((said == y.astype(bool)).mean())
            row[f"spec_{name}"] = float((~said[y == 0]).mean())
        row["spec_pm_only_normals"] = float((p["pm"][~paired & (y_pm == 0)] < card.threshold).mean())
        row["spec_k_only_normals"] = float((p["k_chain"][~k_paired & (y_k == 0)] < card.threshold).mean())
        rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(out / "analysis.csv", index=False)
    summary = table.drop(columns="seed").groupby("stage", sort=False).agg(["mean", "std"]).round(4)
    print(summary.T.to_string())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MEDKD_DATA", "../shared/data")))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=MATCH_SIDE)
    parser.add_argument("--recipe-only", action="store_true", help="(re)write GAP/recipe.yaml alone")
    parser.add_argument("--analyse", action="store_true",
                        help="score finished runs on both copies' test images, overall and on the paired images")
    args = parser.parse_args()
    if args.recipe_only:
        write_recipe(args.out, args.size)
    elif args.analyse:
        analyse(args.data, args.out)
    else:
        build(args.data, args.out, args.size)


if __name__ == "__main__":
    main()
