"""Multi-modal MRI: HDF5 slices and NIfTI volumes (generated BraTS-like cohorts and nibabel's own files), four
channels from the data through training, evaluation, export, prediction and serving."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import onnx
import pandas as pd
import pytest
import torch
import yaml
from fastapi.testclient import TestClient
from PIL import Image
from torchvision.transforms.v2 import ColorJitter
from typer.testing import CliRunner

from conftest import write_kermany_like
from medkd.cli import app
from medkd.config import load_recipe
from medkd.data import DataConfig, DataError, check_data, decode_file, prepare, write_brats_like
from medkd.data.sources.nifti_volumes import load_canonical, slices_of
from medkd.deploy import ExportConfig, ServeConfig, create_app, export_run, load_predictor, predict_files
from medkd.engine import TrainConfig, fit
from medkd.engine.augment import IntensityJitter
from medkd.evaluation import EvaluationConfig, evaluate_run
from medkd.files import FOLD_POOLED, FOLD_RUNS
from medkd.models import ModelError, create_model

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict[str, Path]:
    """The same 20 generated patients in both BraTS layouts."""
    root = tmp_path_factory.mktemp("brats")
    return {"hdf5": write_brats_like(root / "h5", "hdf5", patients=20),
            "nifti": write_brats_like(root / "nii", "nifti", patients=20), "cache": root / "cache"}


def config(cohort, path, **settings) -> DataConfig:
    return DataConfig.model_validate({"path": str(path), "cache_dir": str(cohort["cache"]),
                                      "split": {"min_val_size": 1}, **settings})


def test_both_layouts_are_detected_split_by_patient_and_keep_four_channels(cohort):
    manifest = pd.read_csv(cohort["hdf5"] / "meta_data.csv")
    assert manifest["slice_path"].str.startswith("/content/data/").all()  # as a redistribution wrote them
    prepared = {"hdf5 folder": prepare(config(cohort, cohort["hdf5"]), show_progress=False),
                "hdf5 manifest": prepare(config(cohort, cohort["hdf5"] / "meta_data.csv"), show_progress=False),
                "nifti": prepare(config(cohort, cohort["nifti"]), show_progress=False)}
    for name, data in prepared.items():
        assert data.source.origin.split()[0] == name.split()[0]
        assert (data.config.preprocessing.size, data.config.preprocessing.channels) == (48, 4), name
        assert data.decoded.images.shape[1:] == (4, 48, 48)
        report = check_data(data)
        assert not report.leaks and all(row["patients"] == 0 for row in report.patient_overlap), name
        assert sum(report.patients.values()) == 20 and report.patients_known
        assert all(Path(ref.split("#")[0]).exists() for ref in data.source.samples["ref"])
    # the slices without brain (beyond the ellipsoid) are left out alike; labels: the manifest's target (0/1),
    # the segmentation's tumour-present: the same slices are positive in both
    h5, nii = prepared["hdf5 manifest"], prepared["nifti"]
    assert len(h5.samples) == len(nii.samples) < len(manifest)
    assert "hold no brain" in " ".join(h5.source.warnings)
    assert h5.classes == ["0", "1"] and nii.classes == ["no_tumour", "tumour"]
    per_patient = [data.samples.assign(volume=data.samples["patient"].str.extract(r"(\d+)$")[0].astype(int))
                   .groupby("volume")["label"].sum() for data in (h5, nii)]
    assert per_patient[0].equals(per_patient[1]) and per_patient[0].sum() > 0
    named = prepare(config(cohort, cohort["hdf5"], classes=["no_tumour", "tumour"]), show_progress=False)
    assert named.classes == ["no_tumour", "tumour"] and (named.samples["label"] == h5.samples["label"]).all()


def test_hdf5_slices_without_a_manifest_take_volumes_from_names_and_labels_from_masks(cohort, tmp_path):
    folder = tmp_path / "slices"
    shutil.copytree(cohort["hdf5"], folder, ignore=shutil.ignore_patterns("*.csv"))
    data = prepare(config(cohort, folder), show_progress=False)
    with_manifest = prepare(config(cohort, cohort["hdf5"]), show_progress=False)
    assert data.classes == ["no_tumour", "tumour"]  # mask_classes
    assert data.samples["patient"].nunique() == 20
    by_name = dict(zip(data.samples["ref"].map(lambda r: Path(r).name), data.samples["label"], strict=True))
    expected = dict(zip(with_manifest.samples["ref"].map(lambda r: Path(r).name), with_manifest.samples["label"],
                        strict=True))
    assert by_name == expected
    stricter = prepare(config(cohort, folder, source_settings={"min_mask_area": 200}), show_progress=False)
    assert 0 < stricter.samples["label"].sum() < data.samples["label"].sum()
    with pytest.raises(DataError, match="imagekey: Extra inputs.*it takes .*image_key"):  # checked once detected
        prepare(config(cohort, folder, source_settings={"imagekey": "x"}), show_progress=False)
    with pytest.raises(DataError, match="no dataset 'scan'.*image_key"):
        prepare(config(cohort, folder, source_settings={"image_key": "scan"}), show_progress=False)


def test_channel_counts_the_data_does_not_have_are_refused_before_decoding(cohort, tmp_path):
    with pytest.raises(DataError, match="images have 4 channels"):
        prepare(config(cohort, cohort["nifti"], preprocessing={"channels": 3}), show_progress=False)
    two = prepare(config(cohort, cohort["nifti"], source_settings={"modalities": ["t2", "flair"]}),
                  show_progress=False)
    assert two.config.preprocessing.channels == 2 and two.decoded.images.shape[1] == 2
    # NumPy arrays of 4 channels are 4 modalities (not RGBA): each channel its own range onto 0..255
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(0, 1, (40, 16, 16)) * scale for scale in (1, 10, 100, 1000)], axis=-1)
    for split in ("train", "test"):
        np.save(arrays / f"X_{split}.npy", x.astype(np.float32))
        np.save(arrays / f"y_{split}.npy", np.arange(40) % 2)
    data = prepare(DataConfig.model_validate({"path": str(arrays), "cache_dir": str(tmp_path / "cache"),
                                              "split": {"min_val_size": 1, "patient_pattern": None}}),
                   show_progress=False)
    images = np.asarray(data.decoded.images)
    assert images.shape[1:] == (4, 16, 16)
    assert [int(images[:, c].max()) for c in range(4)] == [255] * 4 and images.std(axis=(0, 2, 3)).min() > 20


def test_nifti_decodes_as_nibabel_reports_orientation_and_scaling(tmp_path):
    """nibabel's own real files: anatomical.nii (LAS, int16) and functional.nii (4-D, scl_slope 0.075, scl_inter
    3100) come out as nibabel's canonical RAS+ arrays with the scaling applied."""
    for name in ("anatomical.nii", "functional.nii"):
        image = nib.load(NIBABEL_DATA / name)
        expected = nib.as_closest_canonical(image).get_fdata()
        expected = expected[..., 0] if expected.ndim == 4 else expected
        assert np.allclose(load_canonical(NIBABEL_DATA / name), expected, rtol=1e-6, atol=1e-3), name
    functional = nib.load(NIBABEL_DATA / "functional.nii")
    assert functional.dataobj.slope != 1 and load_canonical(NIBABEL_DATA / "functional.nii").max() > 3000
    # a marker at the anterior (+y), right (+x) end of a RAS+ volume, stored LPS: an axial slice shows it top right
    ras = np.zeros((8, 10, 6), np.float32)
    ras[7, 9, 3] = 1
    nib.save(nib.Nifti1Image(ras[::-1, ::-1].copy(), np.diag([-1.0, -1.0, 1.0, 1.0])), tmp_path / "lps.nii.gz")
    volume = load_canonical(tmp_path / "lps.nii.gz")
    assert np.array_equal(volume, ras)
    axial = slices_of(volume, 2)[3]
    assert axial.shape == (10, 8) and axial[0, -1] == 1  # row 0: anterior, last column: right


def test_intensity_jitter_draws_as_torchvision_on_any_channel_count():
    jitter = IntensityJitter(brightness=0.3, contrast=0.3)
    image = torch.randint(0, 200, (4, 16, 16), dtype=torch.uint8)
    brightness = {"fn_idx": torch.tensor([0, 1, 2, 3]), "brightness_factor": 1.2, "contrast_factor": None,
                  "saturation_factor": None, "hue_factor": None}
    assert torch.equal(jitter.transform(image, brightness), (image.float() * 1.2).clamp(0, 255).to(torch.uint8))
    contrast = {**brightness, "brightness_factor": None, "contrast_factor": 0.5}
    out = jitter.transform(image, contrast)
    assert out.shape == image.shape and out.float().std() < 0.6 * image.float().std()
    assert abs(out.float().mean() - image.float().mean()) < 1.0  # blended with the mean: it stays
    grey = image[:3]
    torch.manual_seed(0)
    ours = jitter(grey)
    torch.manual_seed(0)
    assert torch.equal(ours, ColorJitter(brightness=0.3, contrast=0.3)(grey))  # grey and RGB: torchvision's own


@pytest.fixture(scope="module")
def mri_run(cohort, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mri_run") / "run"
    data = config(cohort, cohort["hdf5"], classes=["no_tumour", "tumour"])
    fit(data, TrainConfig(model="compact_cnn", model_args={"width": 8}, epochs=3, batch_size=32), folder,
        show_progress=False)
    return folder, data


def test_a_four_channel_model_trains_evaluates_exports_predicts_and_serves(mri_run, tmp_path):
    folder, data = mri_run
    card = json.loads((folder / "model.json").read_text())
    assert card["in_chans"] == 4 and card["preprocessing"] == {"size": 48, "channels": 4, "resize": "squash"}
    assert len(card["normalisation"]["mean"]) == 4
    result = evaluate_run(folder, "test", settings=EvaluationConfig(bootstrap_resamples=0), show_progress=False)
    assert result.at_argmax["auc"] > 0.8, result.at_argmax  # a visible tumour: easy for the generated cohort
    export = export_run(folder, ExportConfig(latency_repeats=0), out=tmp_path / "export", show_progress=False)
    assert export.max_abs_difference < 1e-4
    graph = onnx.load(tmp_path / "export" / "model.onnx")
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [4, 48, 48]
    prepared = prepare(data, show_progress=False)
    test = prepared.samples[prepared.samples["split"] == "test"]
    files = [Path(ref) for ref in test["ref"][:8]]
    images, _ = prepared.split("test")
    for model in (folder, tmp_path / "export" / "model.onnx"):
        predictor = load_predictor(model)
        results = predict_files(predictor, files, heatmap_dir=tmp_path / "heat" if model == folder else None)
        assert all(r.error is None for r in results)
        expected = predictor.probabilities(images[:8])
        assert np.allclose([r.probabilities["tumour"] for r in results], expected[:, 1], atol=1e-5)
    assert len(list((tmp_path / "heat").glob("*.png"))) == 8
    flair = predict_files(load_predictor(folder), files[:1], heatmap_dir=tmp_path / "flair", heatmap_channel=3)
    first = sorted((tmp_path / "heat").glob("*.png"))[0]
    assert Image.open(flair[0].heatmap).size == Image.open(first).size == (48, 48)
    assert not np.array_equal(np.asarray(Image.open(flair[0].heatmap)), np.asarray(Image.open(first)))
    with pytest.raises(ModelError, match="heatmap channel 7: the image has channels 0..3"):
        predict_files(load_predictor(folder), files[:1], heatmap_dir=tmp_path / "bad", heatmap_channel=7)
    assert decode_file(files[0], max_pixels=10**6).channels == 4
    client = TestClient(create_app(load_predictor(folder), ServeConfig()))
    answer = client.post("/predict", files={"file": (files[0].name, files[0].read_bytes(), "application/x-hdf5")})
    assert answer.status_code == 200, answer.text
    assert answer.json()["probabilities"]["tumour"] == pytest.approx(float(expected[0, 1]), abs=1e-5)


def test_patient_folds_hold_every_patient_out_once_stratified_and_leave_a_source_test_split_alone(cohort, tmp_path):
    """Per-patient labels (grade from name_mapping.csv): 5 folds, each the test split once, disjoint by patient,
    every patient tested exactly once, each fold within 1 patient per class of an equal share. A source with its
    own test split: the fold is val, and test is the same images in every fold."""
    graded = {"source_settings": {"labels_csv": "name_mapping.csv"}}
    tested: list[str] = []
    grades = pd.read_csv(cohort["nifti"] / "name_mapping.csv").set_index("BraTS_2020_subject_ID")["Grade"]
    for fold in range(5):
        data = prepare(config(cohort, cohort["nifti"], split={"min_val_size": 1, "folds": 5, "fold": fold}, **graded),
                       show_progress=False)
        splits = data.samples.groupby("split")["patient"].agg(set)
        assert not (splits["test"] & splits["train"]) and not (splits["test"] & splits["val"])
        assert any(f"fold {fold} of 5" in note and "held out as test" in note for note in data.notes)
        tested += sorted(splits["test"])
        for grade, share in (grades.value_counts() / 5).items():
            assert abs(sum(grades[p] == grade for p in splits["test"]) - share) <= 1, (fold, grade)
    assert sorted(tested) == sorted(grades.index)  # every patient tested exactly once
    with pytest.raises(DataError, match="no fold is chosen.*medkd run --folds 5"):
        prepare(config(cohort, cohort["nifti"], split={"folds": 5}), show_progress=False)
    with pytest.raises(ValueError, match="fold 5 needs folds above it"):
        config(cohort, cohort["nifti"], split={"folds": 5, "fold": 5})
    xray = write_kermany_like(tmp_path / "xray", {"train": 2, "test": 1}, patients_per_class=10)
    held, tests = [], []
    for fold in range(3):
        data = prepare(DataConfig.model_validate({"path": str(xray), "cache_dir": str(tmp_path / "cache"),
                                                  "preprocessing": {"size": 16, "channels": 1},
                                                  "split": {"folds": 3, "fold": fold}}), show_progress=False)
        held.append(set(data.samples.loc[data.samples["split"] == "val", "patient"]))
        tests.append(sorted(data.samples.loc[data.samples["split"] == "test", "ref"]))
    assert tests[0] == tests[1] == tests[2]
    assert not (held[0] & held[1]) and not (held[1] & held[2]) and len(set.union(*held)) == 20


def test_a_cross_validated_study_runs_every_fold_reports_across_them_and_resumes(cohort, tmp_path):
    recipe = {"name": "cv", "data": {"path": str(cohort["nifti"]), "cache_dir": str(cohort["cache"]),
                                     "preprocessing": {"size": 24}, "split": {"min_val_size": 1}},
              "train": {"model": "compact_cnn", "model_args": {"width": 4}, "epochs": 1, "batch_size": 32,
                        "precision": "32"},
              "evaluation": {"bootstrap_resamples": 0}, "stages": [{"name": "cnn"}]}
    path = tmp_path / "cv.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "study"
    result = CliRunner().invoke(app, ["run", str(path), "--folds", "3", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    runs = pd.read_csv(out / FOLD_RUNS)
    assert sorted(runs["fold"]) == [0, 1, 2] and (runs["stage"] == "cnn").all()
    pooled = pd.read_csv(out / FOLD_POOLED)
    assert pooled["images"].item() == 400 and pooled["split"].item() == "test"  # every slice tested once
    refs = [pd.read_csv(out / f"fold{k}" / "cnn" / "seed0" / "evaluation" / "test_predictions.csv")["ref"]
            for k in range(3)]
    assert sum(map(len, refs)) == 400 and len(set().union(*map(set, refs))) == 400
    report = (out / "report.md").read_text()
    assert "patient-level 3-fold cross-validation" in report and "| cnn " in report and "fold 2" in report
    assert "Test scores over folds" in result.output
    again = CliRunner().invoke(app, ["run", str(path), "--folds", "3", "--out", str(out), "--no-progress"])
    assert again.exit_code == 0, again.output
    for k in range(3):
        sessions = json.loads((out / f"fold{k}" / "study.json").read_text())["sessions"]
        assert [s["jobs_run"] for s in sessions] == [1, 0]  # the second invocation trained nothing


def test_imagenet_weights_take_four_channels_by_timms_rule():
    """The RGB stem's filters repeated over the 4 channels (R, G, B, R) and rescaled by 3/4, so that a response
    keeps its scale; the rest of the network is ImageNet's."""
    rgb = create_model("efficientnet_lite0", num_classes=2, in_chans=3, weights="imagenet")
    four = create_model("efficientnet_lite0", num_classes=2, in_chans=4, weights="imagenet")
    stem3, stem4 = (next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).weight for model in (rgb, four))
    assert stem4.shape[1] == 4
    assert torch.allclose(stem4[:, :3], stem3 * 3 / 4) and torch.allclose(stem4[:, 3], stem3[:, 0] * 3 / 4)
    assert torch.allclose(stem4.sum(dim=1), stem3.sum(dim=1) * 3 / 4 + stem3[:, 0] * 3 / 4)
    deeper = [name for name, _ in rgb.named_parameters() if not name.startswith(("conv_stem", "classifier"))]
    assert all(torch.equal(rgb.get_parameter(name), four.get_parameter(name)) for name in deeper)


def test_a_model_trained_on_nifti_volumes_predicts_patient_folders_slice_by_slice(cohort, tmp_path):
    """Predict reads a patient folder as the nifti source read it in training (the run card's source settings:
    modalities, axis, the slices with brain), one row per slice FOLDER#SLICE, or the slices asked for."""
    data = config(cohort, cohort["nifti"], preprocessing={"size": 24})
    folder = fit(data, TrainConfig(model="compact_cnn", model_args={"width": 4}, epochs=1, batch_size=32),
                 tmp_path / "run", show_progress=False)
    card = json.loads((folder / "model.json").read_text())
    assert card["source"]["name"] == "nifti" and card["source"]["settings"]["modalities"] == ["t1", "t1ce", "t2",
                                                                                             "flair"]
    prepared = prepare(data.model_copy(update={"preprocessing": data.preprocessing.model_copy(
        update={"size": 24, "channels": 4})}), show_progress=False)
    patient = cohort["nifti"] / "BraTS20_Training_007"
    rows = prepared.samples[prepared.samples["patient"] == patient.name]
    predictor = load_predictor(folder)
    results = predict_files(predictor, [patient])
    assert [r.name for r in results] == [f"{patient.name}#{ref.split('#')[1]}" for ref in rows["ref"]]
    expected = predictor.probabilities(np.asarray(prepared.decoded.images[rows["row"].to_numpy()]))
    assert np.allclose([r.probabilities["tumour"] for r in results], expected[:, 1], atol=1e-5)
    chosen = predict_files(predictor, [cohort["nifti"]], slices=[3, 12])
    assert len(chosen) == 40 and chosen[1].name == "BraTS20_Training_001#12" and "slice 12 of 24" in chosen[1].note
    outside = predict_files(predictor, [patient], slices=[99])
    assert outside[0].error.startswith("slices [99] are outside 0..23")
    not_a_patient = predict_files(predictor, [tmp_path])
    assert "not a patient folder" in not_a_patient[0].error


def test_the_slice_recipe_reads_both_layouts_with_its_own_settings(cohort):
    """recipes/brats_slices.yaml as shipped: its classes name the manifest's 0/1 and the segmentation's labels
    alike, its channels are the data's, its folds cover the cohort, and its quick preset resolves."""
    recipe_file = Path(__file__).parents[1] / "recipes" / "brats_slices.yaml"
    for layout in ("hdf5", "nifti"):
        recipe = load_recipe(recipe_file, {"data": {"path": str(cohort[layout]), "cache_dir": str(cohort["cache"])}},
                             preset="quick")
        assert recipe.data.split.folds == 5 and recipe.train.epochs == 5
        student = recipe.stage_data(next(s for s in recipe.stages if s.name == "student_kd"))
        data = prepare(student.model_copy(update={"split": student.split.model_copy(update={"fold": 0})}),
                       show_progress=False)
        assert data.classes == ["no_tumour", "tumour"] and data.config.preprocessing.channels == 4
        assert data.config.preprocessing.size == 128 and data.samples["label"].nunique() == 2
        assert {s.name for s in recipe.stages} >= {"student_no_kd", "student_ls", "student_kd", "lite0_t224"}
