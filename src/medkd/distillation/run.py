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
from torchvision.transforms import v2

from medkd.data import DataConfig, PreparedData, file_stat
from medkd.device import Placement, is_primary_process
from medkd.distillation.config import HINT_ONLY, DistillConfig
from medkd.distillation.losses import LOGIT_LOSSES, ensemble_logits, soft_kl
from medkd.distillation.module import DistillationModule
from medkd.distillation.teacher import DistillationError, FrozenTeacher, load_teachers
from medkd.distillation.views import teacher_logits, teacher_views, view_images
from medkd.engine import TrainConfig, ViewPlan, build_augmentation, fit
from medkd.evaluation import SCALARS, EvaluationConfig, evaluate_run, predict_logits, run_backbone_identity
from medkd.files import BEST, DISTILLATION_REPORT, SWEEP, TEACHER_LOGITS, fingerprint, one_writer, staged, write_json
from medkd.models import DistillationRecord, Normalisation, RunCard, normalise

log = logging.getLogger(__name__)


def teacher_identity(folders: list[str], views: list[PreparedData], split: str, targets: dict) -> str:
    """Which teachers' weights on which images, and which augmented views: cached logits are reused only when
    this matches."""
    files = [file_stat((Path(f) / BEST).resolve()) for f in folders]
    return fingerprint([files, [view.split_fingerprint(split) for view in views], targets])


def cached_teacher_logits(teacher: FrozenTeacher, cards: list[RunCard], folders: list[str], views: list[PreparedData],
                          splits: dict[str, dict], out: Path, *, device: torch.device,
                          augmentation: v2.Transform | None, bf16: bool) -> dict[str, torch.Tensor]:
    """Teacher logits of each split in `splits` ({split: {}} un-augmented, or {split: {"replay": K, "replay_seed": s,
    "augment": settings[, "mixup": concentration]}} on K augmented (mixed) views), each teacher on its own view,
    computed once on `device` and kept in the run folder (see teacher_logits)."""
    path = out / TEACHER_LOGITS
    identities = {split: teacher_identity(folders, views, split, {**targets, "bf16": bf16})
                  for split, targets in splits.items()}
    with one_writer(path):  # the ranks of a distributed run: one computes, the others read
        if path.exists():
            with safe_open(path, "pt") as handle:
                metadata = handle.metadata() or {}
                if all(metadata.get(split) == identities[split] for split in splits):
                    log.info("teacher logits read from %s", path)
                    return {split: handle.get_tensor(split) for split in splits}
        logits = {}
        probes = [run_backbone_identity(folder, card) for folder, card in zip(folders, cards)]
        for split, targets in splits.items():
            logits[split] = teacher_logits(teacher.models, cards, views, split,
                                           device=device, augmentation=augmentation, replay=targets.get("replay", 0),
                                           replay_seed=targets.get("replay_seed", 0),
                                           mixup=targets.get("mixup", 0.0), bf16=bf16, probes=probes)
            log.info("teacher logits of %s computed: %s", split, tuple(logits[split].shape))
        with staged(path) as staging:
            save_file(logits, staging, metadata=identities)
    return logits


class Distillation:
    """fit() extension: a frozen teacher (or ensemble) teaches the student of the run (see FitExtension).

    Parameters
    ----------
    settings : DistillConfig
        The teachers, the loss and how teacher outputs are produced.
    show_progress : bool, default True
        Progress bars while a teacher's view of the data is prepared.
    """

    section = "distill"
    metric_columns: tuple[str, ...] = ("train_kd_loss", "train_hint_loss", "val_agreement", "val_teacher_kl")

    def __init__(self, settings: DistillConfig, *, show_progress: bool = True) -> None:
        self.settings, self.show_progress = settings, show_progress
        self.teacher: FrozenTeacher | None = None
        self.cards: list[RunCard] = []
        self.views: list[PreparedData] = []  # each teacher's view of the data (its preprocessing)
        self.val_logits: torch.Tensor | None = None  # the teacher's, computed once in build_module
        self.normalisation: tuple[list[float], list[float]] = ([], [])
        self.device = torch.device("cpu")  # where the teacher predicts: the run's accelerator, set in build_module
        self.bf16 = False  # the teacher predicts in bf16 when the run trains in it (set in build_module)
        self.train_views = ViewPlan()

    def settings_dump(self) -> dict:
        """Its settings, for the run's config.yaml (section distill)."""
        return self.settings.model_dump(mode="json")

    def build_module(self, model: nn.Module, settings: TrainConfig, data: PreparedData, splits: dict, *,
                     mean: list[float], std: list[float], class_weight: torch.Tensor | None,
                     out: Path, backbone_lr_scale: float = 1.0) -> DistillationModule:
        """The DistillationModule that trains `model`, its teachers loaded and checked, their outputs added to
        `splits`; cached teacher logits are computed once and kept in the run folder.

        Parameters
        ----------
        model : nn.Module
            The student.
        settings : TrainConfig
            The student's training settings (augmentation, seed, runtime).
        data : PreparedData
            The student's data.
        splits : dict of str to tuple of torch.Tensor
            "train" and "val": (images uint8 (N, C, H, W), labels (N,)), extended in place: val with the cached
            teacher logits (N, teachers, classes); train with them (cached), with (N, K, teachers, classes) on K
            replayed views (cached_views), or with each distinct own view of the teachers, uint8 (N, C', H', W')
            (online).
        mean, std : list of float of length C
            The student's normalisation.
        class_weight : torch.Tensor of shape (classes,), float32, or None
        out : Path
            The run folder.
        backbone_lr_scale : float, default 1.0
            The student's backbone learning rate as a share of its head's (its transfer mode's).

        Returns
        -------
        DistillationModule

        Raises
        ------
        DistillationError
            For teachers of other classes, data whose samples differ at a teacher's preprocessing, a feature hint
            with a teacher at another preprocessing, weight_by_class without class weights, or cached_views
            without augmentation.
        CardError
            A ModelError: a teacher folder without a readable card.
        """
        if self.settings.loss != HINT_ONLY:
            LOGIT_LOSSES[self.settings.loss].check_task(data.classes)  # a loss undefined on this task is refused
        preprocessing, mode = data.config.preprocessing, self.settings.teacher_outputs
        self.normalisation = (mean, std)
        placement = Placement.of(settings.runtime)
        self.device, self.bf16 = placement.device, placement.bf16
        self.teacher, self.cards = load_teachers(self.settings.teachers, classes=data.classes,
                                                 preprocessing=preprocessing,
                                                 normalisation=Normalisation(mean=mean, std=std))
        if self.settings.hint is not None and self.teacher.own_view[0] is not None:
            raise DistillationError(f"a feature hint needs the teacher at the student's preprocessing {preprocessing}; "
                                    f"teacher {self.settings.teachers[0]} was trained at {self.cards[0].preprocessing}")
        if self.settings.weight_by_class and class_weight is None:
            raise DistillationError("distill.weight_by_class weighs the logit term by the class weights, but the run "
                                    "has none: set train.loss.class_weights: balanced, or drop weight_by_class")
        if mode == "cached_views" and settings.augment is None:
            raise DistillationError("teacher_outputs: cached_views replays augmented views, but train.augment is off: "
                                    "switch augmentation on, or use teacher_outputs: cached")
        self.views = teacher_views(data, self.cards, show_progress=self.show_progress)
        needed: dict[str, dict] = {"val": {}}
        if mode == "cached":
            needed["train"] = {}
        elif mode == "cached_views":
            assert settings.augment is not None  # checked above: cached_views needs augmentation
            needed["train"] = {"replay": self.settings.views, "replay_seed": settings.seed,
                               "augment": settings.augment.model_dump(mode="json")}
            if self.settings.mixup:  # only then: unmixed replayed views keep the cache they had
                needed["train"]["mixup"] = self.settings.mixup
        augmentation = build_augmentation(settings.augment)
        logits = cached_teacher_logits(self.teacher, self.cards, self.settings.teachers, self.views,
                                       needed, out,
                                       device=self.device, augmentation=augmentation,
                                       bf16=self.bf16)
        splits["val"] = (*splits["val"], logits["val"])
        if mode == "online":
            own = view_images(self.views, self.teacher.own_view, "train")
            splits["train"] = (*splits["train"], *own)
            self.train_views = ViewPlan(paired=len(own))
        else:
            splits["train"] = (*splits["train"], logits["train"])
            replayed = mode == "cached_views"
            self.train_views = ViewPlan(replay=self.settings.views if replayed else 0, replay_seed=settings.seed,
                                        mixup=self.settings.mixup if replayed else 0.0)
        self.val_logits = logits["val"]
        example = normalise(splits["train"][0][:2], mean, std)
        return DistillationModule(model, self.teacher, settings, self.settings, mean=mean, std=std,
                                  backbone_lr_scale=backbone_lr_scale,
                                  class_weight=class_weight, example=example)

    def card_entries(self) -> dict:
        """The run card's distillation record: teachers (absolute paths), their preprocessing, loss, temperature,
        alpha, teacher outputs and views."""
        settings = self.settings
        return {"distillation": DistillationRecord(
            teachers=[os.path.abspath(t) for t in settings.teachers],
            teacher_preprocessing=[card.preprocessing for card in self.cards], loss=settings.loss,
            temperature=settings.temperature, alpha=settings.alpha, teacher_outputs=settings.teacher_outputs,
            views=settings.views if settings.teacher_outputs == "cached_views" else None,
            mixup=settings.mixup or None)}

    def finish(self, out: Path, model: nn.Module, data: PreparedData) -> None:
        """Teacher-student agreement (share of equal decisions) and KL(teacher || student) on val and test.

        Written to OUT/distillation.json as {split: {"agreement", "kl_teacher_student", "images"}}; a split
        without images is left out.

        Parameters
        ----------
        out : Path
            The run folder.
        model : nn.Module
            The final student.
        data : PreparedData
            The student's data.
        """
        report = {}
        mean, std = self.normalisation
        assert self.teacher is not None and self.val_logits is not None  # set by build_module, which fit() ran
        for split in ("val", "test"):
            images, _ = data.split(split)
            if not len(images):
                continue
            student = predict_logits(model, images, mean=mean, std=std, device=self.device)
            stacked = self.val_logits if split == "val" else teacher_logits(
                self.teacher.models, self.cards, self.views, split, device=self.device, bf16=self.bf16)
            teacher = ensemble_logits(stacked, self.settings.temperature)
            report[split] = {"agreement": float((student.argmax(1) == teacher.argmax(1)).float().mean()),
                             "kl_teacher_student": float(soft_kl(student, teacher, 1.0).mean()), "images": len(images)}
        write_json(out / DISTILLATION_REPORT, report)


def distill(data_config: DataConfig, settings: TrainConfig, distillation: DistillConfig, out: str | Path, *,
            show_progress: bool = True) -> Path:
    """Train student `settings.model` from the teachers of `distillation` into run folder `out` (resumable).

    Parameters
    ----------
    data_config : DataConfig
        The student's data.
    settings : TrainConfig
        The student (transfer scratch, finetune or lp-ft; not linear).
    distillation : DistillConfig
        Teachers (run folders), loss and teacher outputs.
    out : str or Path
        The run folder (see `fit`), with the distillation report (distillation.json) and cached teacher logits.
    show_progress : bool, default True

    Returns
    -------
    Path
        `out`, the student's run folder.

    Raises
    ------
    DistillationError
        When a teacher cannot teach this student on this data (see Distillation.build_module). And as `fit`:
    DataError
        When the data cannot be found or read.
    ModelError
        When the student or a teacher cannot be built or loaded.
    """
    return fit(data_config, settings, out, extension=Distillation(distillation, show_progress=show_progress),
               show_progress=show_progress)


def sweep(data_config: DataConfig, settings: TrainConfig, distillation: DistillConfig, out: str | Path, *,
          show_progress: bool = True) -> pd.DataFrame:
    """Distil the same student from each teacher alone and from their ensemble; one row per teacher set with
    the student's test metrics (at its validation threshold) and its agreement with that teacher set.

    Parameters
    ----------
    data_config, settings, distillation, show_progress
        As for `distill`; each run takes a subset of distillation.teachers.
    out : str or Path
        The sweep's folder: a run folder per teacher set (named as the teacher's folder, or ensemble) and the
        table as OUT/sweep.csv.

    Returns
    -------
    pd.DataFrame
        Columns teachers, the SCALARS metrics on test (at the threshold; argmax for multi-class) and
        test_agreement; empty on the processes other than global rank 0 of a distributed run.

    Raises
    ------
    DistillationError, DataError, ModelError
        As `distill`.
    """
    out = Path(out)
    rows = []
    sets = [[teacher] for teacher in distillation.teachers]
    if len(distillation.teachers) > 1:
        sets.append(list(distillation.teachers))
    for teachers in sets:
        name = "ensemble" if len(teachers) > 1 else Path(teachers[0]).name
        folder = distill(data_config, settings, distillation.model_copy(update={"teachers": teachers}), out / name,
                         show_progress=show_progress)
        if not is_primary_process():
            continue  # the other processes of a distributed sweep train; rank 0 evaluates and writes the table
        result = evaluate_run(folder, "test", settings=EvaluationConfig(bootstrap_resamples=0),
                              accelerator=settings.runtime.accelerator, show_progress=show_progress)
        scores = result.at_threshold or result.at_argmax
        agreement = json.loads((folder / DISTILLATION_REPORT).read_text())["test"]["agreement"]
        rows.append({"teachers": name, **{k: scores[k] for k in SCALARS}, "test_agreement": agreement})
    table = pd.DataFrame(rows)
    if is_primary_process():
        table.to_csv(out / SWEEP, index=False)
    return table
