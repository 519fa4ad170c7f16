"""Cross-resolution distillation: each teacher sees the student's samples as it was trained to see them (its
preprocessing: resolution, channels, resize), and its outputs are computed on that view, un-augmented or on K
augmented views drawn once and replayed to the student."""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn
from torchvision.transforms import v2

from medkd.data import SPLITS, PreparedData, Preprocessing, prepare
from medkd.distillation.teacher import DistillationError
from medkd.engine import augmented_view
from medkd.evaluation import predict_run_logits, probe_logits
from medkd.models import RunCard


def teacher_views(data: PreparedData, cards: list[RunCard], *, show_progress: bool) -> list[PreparedData]:
    """For each teacher (its run card), the student's data prepared with the teacher's preprocessing: `data`
    itself when they agree, else the same source decoded again (cached like any data set). The samples must be
    the same in every split and in the same order, else a DistillationError says where they differ."""
    prepared = {json.dumps(data.config.preprocessing.model_dump(), sort_keys=True): data}
    views = []
    for card in cards:
        key = json.dumps(card.preprocessing.model_dump(), sort_keys=True)
        if key not in prepared:
            config = data.config.model_copy(update={"preprocessing": card.preprocessing})
            prepared[key] = same_samples(data, prepare(config, show_progress=show_progress), card.preprocessing)
        views.append(prepared[key])
    return views


def same_samples(student: PreparedData, teacher: PreparedData, preprocessing: Preprocessing) -> PreparedData:
    """`teacher` when it holds the student's samples split for split, in order (a file that decodes at one size
    and not at another would shift every later sample)."""
    for split in SPLITS:
        ours = student.samples.loc[student.samples["split"] == split, "ref"].astype(str).tolist()
        theirs = teacher.samples.loc[teacher.samples["split"] == split, "ref"].astype(str).tolist()
        if ours != theirs:
            differ = sorted(set(ours) ^ set(theirs))[:3]
            raise DistillationError(
                f"prepared with the teacher's preprocessing {preprocessing}, the {split} split holds other samples "
                f"than the student's ({len(theirs)} vs {len(ours)}; "
                f"e.g. {differ or 'the same files in another order'}):"
                " check the data's skipped_files.csv at both sizes, or train teacher and student at one preprocessing")
    return teacher


def teacher_logits(models: nn.ModuleList, cards: list[RunCard], views: list[PreparedData], split: str, *,
                   device: torch.device, augmentation: v2.Transform | None = None,
                   replay: int = 0, replay_seed: int = 0, mixup: float = 0.0, bf16: bool = False,
                   probes: list[dict | None] | None = None) -> torch.Tensor:
    """Logits of every teacher on its own view of `split`: (N, teachers, C); with `replay` = K > 0, on the K
    augmented views of each image that the student's data loader replays (view k of image i drawn from seed
    (replay_seed, i, k) at each teacher's resolution, mixed with its partner's view k where `mixup` > 0, see
    engine.augmented_view): (N, K, teachers, C). `bf16`: in bf16 autocast, as the run
    trains (soft targets need no more; where the CPU has native bf16 it is several times faster).
    `probes`: per teacher, the backbone identity of a linear-probe teacher (engine.backbone_identity) or None;
    un-augmented logits of a probe are its head on the backbone features its own run cached (no network pass)."""
    per_teacher = []
    probes = probes or [None] * len(models)
    for model, card, view, probe in zip(models, cards, views, probes):
        images, _ = view.split(split)
        if not replay and probe is not None:
            per_teacher.append(probe_logits(model, probe, card, view, split,
                                            device=device, bf16=bf16))
            continue
        if not replay:
            per_teacher.append(predict_run_logits(model, images, card, device=device,
                                                  bf16=bf16))
            continue
        per_view = [predict_run_logits(model, augmented_view(augmentation, images, replay_seed, k, mixup), card,
                                       device=device, bf16=bf16) for k in range(replay)]
        per_teacher.append(torch.stack(per_view, dim=1))
    return torch.stack(per_teacher, dim=-2).contiguous()


def view_images(views: list[PreparedData], own_view: list[int | None], split: str) -> tuple[torch.Tensor, ...]:
    """The uint8 images of `split` for each distinct own view (FrozenTeacher.own_view numbering)."""
    first = {}
    for view, index in zip(views, own_view):
        if index is not None and index not in first:
            first[index] = view
    return tuple(torch.from_numpy(np.ascontiguousarray(first[index].split(split)[0])) for index in sorted(first))
