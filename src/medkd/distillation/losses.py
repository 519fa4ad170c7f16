"""Distillation losses on logits, in a registry: Hinton KD, decoupled KD, logit-standardised KD, DIST.

A loss is one registered class (as in torchdistill): built with the temperature and its own settings
(`Params`, from the recipe's `distill.loss_params`). Its `per_sample(student, teacher, labels)` takes student
and teacher logits (N, C) and labels (N,) and returns the loss of each sample (N,); calling the loss gives the
batch mean, or with class weights (C,) the class-weighted mean (see DistillConfig.weight_by_class).
Temperatures soften **both** sides, and the T^2 factor keeps gradient sizes comparable across temperatures
(Hinton et al., 2015): KD = T^2 * KL(softmax(t / T) || softmax(s / T)).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import Field

from medkd.engine import class_weighted_mean
from medkd.registry import Registry
from medkd.settings import StrictModel

log = logging.getLogger(__name__)


class NoParams(StrictModel):
    """A loss without settings of its own."""


class LogitLoss:
    """Base of the KD losses on logits.

    A subclass sets `Params` (a StrictModel of its own settings, from the recipe's distill.loss_params) and
    implements `per_sample`; calling the loss gives the batch mean.

    Parameters
    ----------
    temperature : float
        T > 0, dividing student and teacher logits before the softmax.
    params : StrictModel, optional
        Validated settings of type `Params`; default: `Params()`.
    """

    Params: type[StrictModel] = NoParams

    def __init__(self, temperature: float, params: StrictModel | None = None) -> None:
        self.temperature = temperature
        self.params = params if params is not None else self.Params()

    @classmethod
    def check_task(cls, classes: list[str]) -> None:
        """Refuse (DistillationError) a task on which the loss is undefined or carries no teacher information, or
        log what it reduces to there; nothing for a loss defined on every task."""

    def per_sample(self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """(N,) loss of each sample.

        Parameters
        ----------
        student : torch.Tensor of shape (N, C)
            The student's logits.
        teacher : torch.Tensor of shape (N, C)
            The teacher's (or the ensemble's, see `ensemble_logits`) logits.
        labels : torch.Tensor of shape (N,), int64, or None
            The true classes; losses that need them (dkd) fail without.

        Returns
        -------
        torch.Tensor of shape (N,), float32
        """
        raise NotImplementedError

    def __call__(self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor | None,
                 class_weight: torch.Tensor | None = None) -> torch.Tensor:
        """The batch mean of `per_sample`; with `class_weight` (C,), weighted by each sample's class as a
        weighted cross-entropy is (class_weighted_mean).

        Parameters
        ----------
        student, teacher : torch.Tensor of shape (N, C)
            Logits, as for `per_sample`.
        labels : torch.Tensor of shape (N,), int64, or None
            Needed with `class_weight`, and by losses that read them.
        class_weight : torch.Tensor of shape (C,), float32, optional

        Returns
        -------
        torch.Tensor of shape (), float32
        """
        return class_weighted_mean(self.per_sample(student, teacher, labels), labels, class_weight)


LOGIT_LOSSES: Registry[type[LogitLoss]] = Registry("KD loss")


def register_logit_loss(name: str) -> Callable[[type[LogitLoss]], type[LogitLoss]]:
    """Class decorator: register a LogitLoss as `distill.loss: name`; a later registration of the same name wins
    (with a warning). Returns the decorator (Registry.register), which returns the class unchanged."""
    return LOGIT_LOSSES.register(name)


def build_logit_loss(name: str, temperature: float, params: dict) -> LogitLoss:
    """The registered loss `name` at `temperature` with its own settings `params` (validated by its Params).

    Parameters
    ----------
    name : str
        A key of LOGIT_LOSSES.
    temperature : float
    params : dict
        The loss's own settings (distill.loss_params).

    Returns
    -------
    LogitLoss

    Raises
    ------
    KeyError
        For an unregistered name (DistillConfig refuses one when the recipe is read).
    pydantic.ValidationError
        For settings its Params refuses.
    """
    loss = LOGIT_LOSSES[name]
    return loss(temperature, loss.Params.model_validate(params))


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample KL(softmax(teacher / T) || softmax(student / T))."""
    log_student = F.log_softmax(student.float() / temperature, dim=1)
    log_teacher = F.log_softmax(teacher.float() / temperature, dim=1)
    return (log_teacher.exp() * (log_teacher - log_student)).sum(dim=1)


@register_logit_loss("kd")
class HintonKD(LogitLoss):
    def per_sample(self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.temperature**2 * soft_kl(student, teacher, self.temperature)


def decoupled_parts(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                    temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample (TCKD, NCKD, teacher's non-target mass) of Zhao et al., 2022, without the T^2 factor.

    TCKD: KL between the binary (target, rest) distributions; NCKD: KL between the distributions over the
    non-target classes alone. KL(teacher || student) = TCKD + teacher's non-target mass * NCKD.
    """
    student, teacher = student.float() / temperature, teacher.float() / temperature
    target = F.one_hot(labels, student.shape[1]).bool()

    def binary(logits: torch.Tensor) -> torch.Tensor:
        p_target = logits.softmax(dim=1)[target]
        return torch.stack([p_target, 1 - p_target], dim=1).clamp_min(1e-12)

    b_student, b_teacher = binary(student), binary(teacher)
    tckd = (b_teacher * (b_teacher.log() - b_student.log())).sum(dim=1)
    rest = student.shape[1] - 1
    nckd = soft_kl(student[~target].view(-1, rest), teacher[~target].view(-1, rest), 1.0)
    return tckd, nckd, b_teacher[:, 1]


class DecoupledParams(StrictModel):
    tckd_weight: float = Field(1.0, ge=0, description="weight of the target-class term (the paper's alpha)")
    nckd_weight: float = Field(8.0, ge=0, description="weight of the non-target-class term (the paper's beta)")


@register_logit_loss("dkd")
class DecoupledKD(LogitLoss):
    Params = DecoupledParams
    params: DecoupledParams

    @classmethod
    def check_task(cls, classes: list[str]) -> None:
        if len(classes) == 2:  # the non-target part is a distribution over one class: KL 0, whatever the logits
            log.warning("dkd on two classes: its non-target term is a KL divergence over one class, always 0, so "
                        "nckd_weight does nothing; dkd is its target term (tckd_weight times binary KD) here")

    def per_sample(self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        assert labels is not None  # decoupled KD splits each sample's logits at its label
        tckd, nckd, _ = decoupled_parts(student, teacher, labels, self.temperature)
        weights = self.params
        return self.temperature**2 * (weights.tckd_weight * tckd + weights.nckd_weight * nckd)


def standardise(logits: torch.Tensor) -> torch.Tensor:
    """Z-score each logit vector (Sun et al., 2024): removes the logits' scale, keeps their ranking."""
    logits = logits.float()
    return (logits - logits.mean(dim=1, keepdim=True)) / (logits.std(dim=1, keepdim=True) + 1e-7)


@register_logit_loss("lskd")
class StandardisedKD(HintonKD):
    @classmethod
    def check_task(cls, classes: list[str]) -> None:
        if len(classes) == 2:
            from medkd.distillation.teacher import DistillationError  # the teachers' module imports this one

            raise DistillationError(
                "lskd is undefined in effect on two classes: z-scoring two logits always gives (+1/sqrt 2, -1/sqrt 2),"
                " so the teacher's target carries only its argmax, not how sure it is. Use kd (Hinton; its "
                "temperature keeps the teacher's confidence), or dkd's target term (tckd_weight)")
    def per_sample(self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return super().per_sample(standardise(student), standardise(teacher), labels)


def pearson(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """Pearson correlation of `a` and `b` along `dim`: the cosine of the centred vectors (0 where one is
    constant)."""
    return F.cosine_similarity(a - a.mean(dim=dim, keepdim=True), b - b.mean(dim=dim, keepdim=True), dim=dim,
                               eps=1e-12)


class DistParams(StrictModel):
    inter_weight: float = Field(1.0, ge=0, description="weight of the inter-class term (the paper's beta): each "
                                                       "sample's class probabilities correlated with the teacher's")
    intra_weight: float = Field(1.0, ge=0, description="weight of the intra-class term (the paper's gamma): each "
                                                       "class's probabilities over the batch correlated with the "
                                                       "teacher's, so the student ranks the batch as it does")


@register_logit_loss("dist")
class DIST(LogitLoss):
    """DIST (Huang et al., NeurIPS 2022): 1 - Pearson correlation between student and teacher probabilities at
    temperature T, across classes within each sample (inter) and across the batch within each class (intra),
    times T^2. The intra-class term is a property of the batch: `per_sample` gives each sample its own inter-class
    term plus the batch's intra-class term, so the batch mean is the paper's loss (class weights weigh the
    inter-class part; the batch term is shared)."""

    Params = DistParams
    params: DistParams

    @classmethod
    def check_task(cls, classes: list[str]) -> None:
        if len(classes) == 2:  # (p, 1 - p) centred is (p - 1/2)(1, -1): any two such vectors correlate at +-1
            log.warning("dist on two classes: its inter-class term is 1 - (+-1), a constant without gradient, so "
                        "inter_weight does nothing; dist is its intra-class term (the batch's P(positive) "
                        "correlated with the teacher's) here")

    def per_sample(self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        p_student = (student.float() / self.temperature).softmax(dim=1)
        p_teacher = (teacher.float() / self.temperature).softmax(dim=1)
        inter = 1 - pearson(p_student, p_teacher, dim=1)  # (N,)
        intra = 1 - pearson(p_student, p_teacher, dim=0).mean()  # () over classes, each across the batch
        return self.temperature**2 * (self.params.inter_weight * inter + self.params.intra_weight * intra)


def ensemble_logits(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(N, teachers, C) -> (N, C) logits whose softmax at `temperature` is the mean of the teachers' softened
    probabilities. One teacher's logits are returned unchanged.

    Parameters
    ----------
    logits : torch.Tensor of shape (N, teachers, C)
        Stacked teacher logits (FrozenTeacher's output).
    temperature : float
        T > 0 of the distillation.

    Returns
    -------
    torch.Tensor of shape (N, C)
        float32 for several teachers (T * log of the mean probabilities, clipped at 1e-12); one teacher's in its
        own dtype.
    """
    if logits.shape[1] == 1:
        return logits[:, 0]
    probabilities = (logits.float() / temperature).softmax(dim=2).mean(dim=1)
    return temperature * probabilities.clamp_min(1e-12).log()
