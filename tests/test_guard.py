"""The out-of-distribution guard on real chest X-rays against images that are not chest X-rays, all of them real
files that packages ship (scikit-image's sample photos, pydicom's CT and MR slices) or that anyone can make
(noise, blank frames, rendered text)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageDraw
from pydicom.data import get_testdata_file

from medkd.config import load_recipe
from medkd.data import DataConfig
from medkd.deploy import ExportConfig, export_run, load_predictor, predict_files
from medkd.engine import TrainConfig, fit

pytestmark = [pytest.mark.real_data, pytest.mark.slow]  # each trains on the whole train split

SAMPLE_PHOTOS = ("astronaut", "camera", "cat", "coffee", "coins", "horse", "moon", "page", "text", "clock",
                 "hubble_deep_field", "immunohistochemistry", "rocket", "retina", "brick", "grass", "gravel", "logo",
                 "microaneurysms", "colorwheel", "cell")  # those scikit-image ships (others it downloads)


def write_not_chest_xrays(folder: Path) -> list[Path]:
    """Photos (whole and three crops each), uniform noise, blank frames, text pages, a CT and an MR slice."""
    folder.mkdir(parents=True)
    images = {}
    for name in SAMPLE_PHOTOS:
        photo = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        w, h = photo.size
        for index, box in enumerate([(0, 0, w, h), (0, 0, w // 2, h // 2), (w // 2, h // 2, w, h),
                                     (w // 4, h // 4, 3 * w // 4, 3 * h // 4)]):
            images[f"{name}_{index}.png"] = photo.crop(box)
    rng = np.random.default_rng(0)
    for index in range(10):
        images[f"noise_{index}.png"] = Image.fromarray(rng.integers(0, 256, (256, 256), dtype=np.uint8))
    for level in (0, 64, 128, 192, 255):
        images[f"blank_{level}.png"] = Image.new("L", (256, 256), level)
    for index in range(10):
        page = Image.new("L", (256, 256), 255 if index % 2 else 0)
        draw = ImageDraw.Draw(page)
        for line in range(8):
            draw.text((10, 10 + 30 * line), f"report {index}, line {line}: no finding", fill=0 if index % 2 else 255)
        images[f"rendered_text_{index}.png"] = page
    for name, image in images.items():
        image.save(folder / name)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), folder / name)
    return sorted(folder.iterdir())


def test_guard_passes_test_xrays_and_flags_what_is_not_a_chest_xray(real_data, tmp_path):
    """The must-show: at most 5 % of the official test X-rays flagged, at least 99 % of the others. The model is
    EfficientNet-Lite0's ImageNet backbone with a linear head at 96 px (a guard on frozen pretrained features
    does not depend on the head's training seed)."""
    config = DataConfig.model_validate({"path": str(real_data / "chest_xray"), "cache_dir": str(tmp_path / "cache"),
                                        "preprocessing": {"size": 96, "channels": 1}})
    settings = TrainConfig(model="efficientnet_lite0", weights="imagenet", transfer="linear", epochs=10, batch_size=32)
    predictor = load_predictor(fit(config, settings, tmp_path / "run", show_progress=False))
    assert predictor.card["ood"]["val_pass_rate"] == 0.95

    xrays = predict_files(predictor, [real_data / "chest_xray" / "test"])
    assert len(xrays) == 624 and all(result.error is None for result in xrays)
    flagged_xrays = np.mean([result.in_distribution is False for result in xrays])
    others = predict_files(predictor, write_not_chest_xrays(tmp_path / "others"))
    assert len(others) == 4 * len(SAMPLE_PHOTOS) + 27 and all(result.error is None for result in others)
    flagged_others = np.mean([result.in_distribution is False for result in others])
    missed = [Path(result.file).name for result in others if result.in_distribution is not False]
    assert flagged_xrays <= 0.05 and flagged_others >= 0.99, (flagged_xrays, flagged_others, missed)
    reasons = {Path(result.file).name: result.ood_reason for result in others}
    assert reasons["CT_small.dcm"].startswith("DICOM Modality is CT") and reasons["blank_0.png"].startswith(
        "the image is blank")
    assert all(result.ood_score is not None for result in xrays + others)


def test_the_deployed_students_guard_passes_test_xrays_of_each_class_and_flags_the_rest(real_data, tmp_path):
    """The main job's student (compact_cnn, 32 px) with its recipe's guard (block features, 99 % of validation
    passed), carried into the ONNX export: at most 5 % of each class of the official test X-rays flagged, every
    image that is not a chest X-ray flagged. (Trained for 8 epochs here, not the recipe's 30, to keep the suite
    short; its penultimate-feature guard at 95 % is what flagged a fifth of the test NORMALs.)"""
    recipe = load_recipe(Path(__file__).parents[1] / "recipes" / "pneumonia_student.yaml")
    student = next(stage for stage in recipe.stages if stage.name == "student_no_kd")
    config = recipe.stage_data(student).model_copy(update={"path": str(real_data / "chest_xray"),
                                                          "cache_dir": str(tmp_path / "cache")})
    settings = recipe.stage_train(student, seed=0).model_copy(update={"epochs": 8})
    assert settings.guard.features == "blocks" and settings.guard.val_pass_rate == 0.99
    folder = fit(config, settings, tmp_path / "student", show_progress=False)
    onnx_path = export_run(folder, ExportConfig(), show_progress=False).path
    for index, predictor in enumerate((load_predictor(folder), load_predictor(onnx_path))):
        xrays = predict_files(predictor, [real_data / "chest_xray" / "test"])
        flagged = {cls: np.mean([r.in_distribution is False for r in xrays if f"/{cls}/" in str(r.file)])
                   for cls in ("NORMAL", "PNEUMONIA")}
        others = predict_files(predictor, write_not_chest_xrays(tmp_path / f"others{index}"))
        missed = [Path(r.file).name for r in others if r.in_distribution is not False]
        assert max(flagged.values()) <= 0.05 and not missed, (predictor.engine, flagged, missed)
