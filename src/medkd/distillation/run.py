"""Distillation runs: the fit() extension that adds a teacher, `distill()`, and the teacher sweep."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from medkd.data import DataConfig, PreparedData, file_stat
from medkd.distillation.config import DistillConfig
from medkd.distillation.losses import ensemble_logits, soft_kl
from medkd.distillation.module import DistillationModule
from medkd.distillation.teacher import FrozenTeacher, load_teachers
from medkd.engine import TrainConfig, fit
from medkd.device import inference_device
from medkd.evaluation import SCALARS, EvaluationConfig, evaluate_run, predict_logits
from medkd.files import BEST, DISTILLATION_REPORT, TEACHER_LOGITS, fingerprint, staged, write_json
from medkd.models import normalise

log = logging.getLogger(__name__)


def teacher_identity(folders: list[str], data: PreparedData, split: str) -> str:
    """Which teachers' weights on which images: cached logits are reused only when this matches."""
    files = [file_stat((Path(f) / BEST).resolve()) for f in folders]
    return fingerprint([files, data.split_fingerprint(split)])


def cached_teacher_logits(teacher: FrozenTeacher, folders: list[str], data: PreparedData, splits: list[str], out: Path,
                          *, mean: list[float], std: list[float], batch_size: int,
                          device: torch.device) -> dict[str, torch.Tensor]:
    """Teacher logits (N, teachers, C) of un-augmented images, computed once on `device` and kept in the run
    folder."""
    path = out / TEACHER_LOGITS
    identities = {split: teacher_identity(folders, data, split) for split in splits}
    if path.exists():
        with safe_open(path, "pt") as handle:
            metadata = handle.metadata() or {}
            if all(metadata.get(split) == identities[split] for split in splits):
                log.info("teacher logits read from %s", path)
                return {split: handle.get_tensor(split) for split in splits}
    logits = {}
    for split in splits:
        images, _ = data.split(split)
        logits[split] = predict_logits(teacher, images, mean=mean, std=std, batch_size=batch_size,
                                       device=device).contiguous()
        log.info("teacher logits of %s (%d images) computed", split, len(images))
    out.mkdir(parents=True, exist_ok=True)
    with staged(path) as staging:
        save_file(logits, staging, metadata=identities)
    return logits


class Distillation:
    """fit() extension: a frozen teacher (or ensemble) teaches the student of the run (see FitExtension)."""

    section = "distill"
    metric_columns = ("val_agreement", "val_teacher_kl")

    def __init__(self, settings: DistillConfig) -> None:
        self.settings = settings
        self.teacher: FrozenTeacher | None = None
        self.val_logits: torch.Tensor | None = None  # the teacher's, computed once in build_module
        self.normalisation: tuple[list[float], list[float]] = ([], [])
        self.device = torch.device("cpu")  # where the teacher predicts: the run's accelerator, set in build_module

    def settings_dump(self) -> dict:
        return self.settings.model_dump(mode="json")

    def build_module(self, model: nn.Module, settings: TrainConfig, data: PreparedData, splits: dict, *,
                     mean: list[float], std: list[float], class_weight: torch.Tensor | None,
                     out: Path) -> DistillationModule:
        config = data.config.preprocessing
        self.normalisation = (mean, std)
        self.device = inference_device(settings.runtime.accelerator)
        self.teacher, _ = load_teachers(self.settings.teachers, classes=data.classes, in_chans=config.channels,
                                        preprocessing=config.model_dump(), normalisation={"mean": mean, "std": std})
        needed = ["val"] + (["train"] if self.settings.teacher_outputs == "cached" else [])
        logits = cached_teacher_logits(self.teacher, self.settings.teachers, data, needed, out, mean=mean, std=std,
                                       batch_size=settings.batch_size, device=self.device)
        for split in needed:
            splits[split] = (*splits[split], logits[split])
        self.val_logits = logits["val"]
        example = normalise(splits["train"][0][:2], mean, std)
        return DistillationModule(model, self.teacher, settings, self.settings, mean=mean, std=std,
                                  class_weight=class_weight, example=example)

    def sidecar(self) -> dict:
        return {"distillation": {"teachers": [os.path.abspath(t) for t in self.settings.teachers],
                                 "loss": self.settings.loss, "temperature": self.settings.temperature,
                                 "alpha": self.settings.alpha, "teacher_outputs": self.settings.teacher_outputs}}

    def finish(self, out: Path, model: nn.Module, data: PreparedData) -> None:
        """Teacher-student agreement (share of equal decisions) and KL(teacher || student) on val and test."""
        report = {}
        mean, std = self.normalisation
        for split in ("val", "test"):
            images, _ = data.split(split)
            if not len(images):
                continue
            student = predict_logits(model, images, mean=mean, std=std, device=self.device)
            stacked = self.val_logits if split == "val" else predict_logits(self.teacher, images, mean=mean, std=std,
                                                                             device=self.device)
            teacher = ensemble_logits(stacked, self.settings.temperature)
            report[split] = {"agreement": float((student.argmax(1) == teacher.argmax(1)).float().mean()),
                             "kl_teacher_student": float(soft_kl(student, teacher, 1.0).mean()), "images": len(images)}
        write_json(out / DISTILLATION_REPORT, report)


def distill(data_config: DataConfig, settings: TrainConfig, distillation: DistillConfig, out: str | Path, *,
            show_progress: bool = True) -> Path:
    """Train student `settings.model` from the teachers of `distillation` into run folder `out` (resumable)."""
    return fit(data_config, settings, out, extension=Distillation(distillation), show_progress=show_progress)


def sweep(data_config: DataConfig, settings: TrainConfig, distillation: DistillConfig, out: str | Path, *,
          show_progress: bool = True) -> pd.DataFrame:
    """Distil the same student from each teacher alone and from their ensemble; one row per teacher set with
    the student's test metrics (at its validation threshold) and its agreement with that teacher set."""
    out = Path(out)
    rows = []
    sets = [[teacher] for teacher in distillation.teachers]
    if len(distillation.teachers) > 1:
        sets.append(list(distillation.teachers))
    for teachers in sets:
        name = "ensemble" if len(teachers) > 1 else Path(teachers[0]).name
        folder = distill(data_config, settings, distillation.model_copy(update={"teachers": teachers}), out / name,
                         show_progress=show_progress)
        result = evaluate_run(folder, "test", settings=EvaluationConfig(bootstrap_resamples=0),
                              accelerator=settings.runtime.accelerator, show_progress=show_progress)
        scores = result.at_threshold or result.at_argmax
        agreement = json.loads((folder / DISTILLATION_REPORT).read_text())["test"]["agreement"]
        rows.append({"teachers": name, **{k: scores[k] for k in SCALARS}, "test_agreement": agreement})
    table = pd.DataFrame(rows)
    table.to_csv(out / "sweep.csv", index=False)
    return table
