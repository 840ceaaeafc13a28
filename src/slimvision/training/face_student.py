"""Distil dlib's face ResNet into a narrower student: pseudo-identity faces, the teacher's descriptors.

The student is the teacher's own architecture at ``width`` x its channels (the thesis behind the
faces system compares dlib's ResNet at half the channels in its tables 16-18), started from the
teacher's most important channels (:mod:`slimvision.compress.prune_dlib`) and trained to give
the teacher's 128-d descriptor for the same chip, so it can replace the teacher in the same
pipeline, with the same 0.6 threshold.

Data (:mod:`slimvision.data.face_identities`): ``faces`` synthetic faces from gan-face-generate,
aligned onto canvases by a landmark finder the caller hands in (the detector lives in the
inference layer), and ``samples_per_face`` augmented pictures of each (pose, light, blur, noise,
JPEG, grey). No real photo that ships is trained on: every one stays for the agreement check.
``photos`` adds the faces found in the user's own photos (no names needed; each face becomes a
pseudo-identity beside the synthetic ones): the synthetic faces are less varied than real ones,
which the students then see at compressed distances (docs/faces.md, "Where the real pairs are
lost"). The teacher's descriptors of the fixed set of pictures are computed once into the run
folder (``targets.npy``), so epochs cost the student's time only.

Losses (``loss``, :data:`LOSSES`; the heads are in :mod:`slimvision.training.face_losses`):

- ``"regression"``: ``mse_weight`` x the squared Euclidean distance to the teacher's descriptor
  (the distance the 0.6 threshold is set on) + ``cosine_weight`` x (1 - cosine).
- ``"arcface"`` / ``"cosface"``: a margin softmax over the pseudo-identities (Deng et al. 2019;
  Wang et al. 2018), with learnable class centres started at the teacher's, plus
  ``regression_weight`` x the regression loss.
- ``"margin-distillation"``: the teacher's class centres as a fixed classifier and a margin per
  class that follows the teacher (Svitov & Alyamkin, arXiv 2003.02586), plus
  ``regression_weight`` x the regression loss.

What makes the half-width student learn at all (docs/faces.md, measured on held-out synthetic
faces), and so the defaults: ``batch_norm`` (dlib's network has its norms folded into its convs;
without norms the pruned student stays at the teacher's mean descriptor), a ``target_space``
centred on the teacher's mean descriptor (the raw cosine of that mean to every face is about
0.94, so the raw loss rewards the mean), a ``relational_weight`` (RKD distances over each batch's
pairs), a ``hint_weight`` (each level's features against the teacher channels the student holds)
and the ``distance_scale`` fitted after training. Those that only fit some students or losses
default to ``"auto"`` (:data:`AUTO`), which :meth:`FaceStudentConfig.resolved` turns into the
recipe's value where it applies and "off" elsewhere; a run saves the resolved values. The
defaults before the recipe were plain regression (:data:`LEGACY_DEFAULTS`, which the students of
that time collapsed under): a saved config that lacks one of those keys was trained with its
old value, and :meth:`FaceStudentConfig.from_saved` reads it so.

Why a margin loss keeps the regression term: the student replaces the teacher in a pipeline that
compares descriptors by Euclidean distance at dlib's 0.6 threshold and against galleries the
teacher enrolled. A margin softmax sees only directions (the descriptor's length is free) and,
with learnable centres, any rotation of the space serves it as well; the regression term holds
the student's descriptors where the teacher's are, the margin term asks them to keep the
pseudo-identities apart by a margin besides. ``regression_weight=0`` trains on the margin alone
(the student then needs its own threshold and gallery). The default weight is 10, not a small
one: the margin term's gradient is steep (it scales with s=30 and with 1 / a descriptor's
distance from the origin the angles are measured from, 0.48 for the teacher's). In a tiny run
(39 faces x 4 pictures, the half-width student from the teacher's channels, 60 steps of 16) the
student's mean cosine to the teacher's descriptors reached 0.94 with the regression alone, 0.84
beside ArcFace at weight 1 and 0.93 at weight 10, while the ArcFace term fell alike at both
weights (to 12.4 and 12.6 by step 60). A run that short says nothing about recognition; it only
sets the balance.

Example:
    >>> config = FaceStudentConfig(faces=2000, steps=3000)
    >>> resolved = config.resolved()  # "auto" settings for the dlib student and the regression loss
    >>> resolved.batch_norm, resolved.hint_weight, resolved.distance_scale, resolved.target_space
    (True, 1.0, True, 'centred')
    >>> report = train_face_student(config, "runs/face-half", canvases=maker, export=export_embedder)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from slimvision.data.face_identities import DETECTION_SIDE, FaceAugment
from slimvision.errors import ConfigError, SlimvisionError
from slimvision.training.config import TrainingConfig
from slimvision.training.trainer import FineTuneSchedule

log = logging.getLogger(__name__)

STUDENTS = ("dlib", "mobilefacenet")
#: The chip each student reads (``data.face_identities.chip_from_canvas``).
STUDENT_CHIPS = {"dlib": "dlib", "mobilefacenet": "arcface"}
INITS = ("pruned-teacher", "scratch")
LOSSES = ("regression", "arcface", "cosface", "margin-distillation")
#: Where the regression loss compares descriptors (:class:`DescriptorSpace`).
TARGET_SPACES = ("raw", "centred", "standardised")
#: The margin each margin loss takes when ``margin`` is None (for margin-distillation: the largest
#: per-class margin). Smaller than the papers' (ArcFace 0.5 rad, CosFace 0.35, at s=64 on 512-d
#: embeddings of tens of thousands of identities): on 383 synthetic pseudo-identities, measured from the teacher's
#: mean descriptor (``face_losses``), the teacher's own pictures are 0.42 rad (median) from their
#: class centre, and the nearest other centre is 0.63 rad further (median; 0.45 at the 10th
#: percentile). ArcFace's 0.3 rad stays below that, so a student that matches the teacher nearly
#: satisfies both the margin and the regression term (the teacher's own cross-entropy at s=30:
#: 0.08; at 0.5 rad: 0.68); CosFace's 0.2 asks about as much (teacher cross-entropy 0.06; at 0.35:
#: 0.75), and margin-distillation's per-class margins span 0.2-0.4 rad around it. (A small sample:
#: 4 pictures per face; docs/faces.md says how it was measured.)
MARGINS = {"arcface": 0.3, "cosface": 0.2, "margin-distillation": 0.4}
#: The fields that only the margin losses read (``min_margin`` only margin-distillation).
MARGIN_FIELDS = ("margin", "min_margin", "scale", "regression_weight")
#: The largest margin accepted (radians, or a cosine difference for CosFace); an angular margin
#: must stay below pi/2.
MAX_MARGIN = 1.5
#: The run folder's files: the aligned canvases, the teacher's descriptors of every picture.
CANVASES_FILE, TARGETS_FILE = "canvases.npy", "targets.npy"
#: Settings a resumed run may change (the step count, to train longer; intervals; the device).
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "log_every", "device", "distance_scale")
#: The value of a setting that only fits some students or losses: :meth:`FaceStudentConfig.resolved`
#: makes it the measured recipe's value where it applies and "off" where it does not.
AUTO = "auto"
#: The defaults before the measured recipe became the defaults (issue 25): plain regression, no norms,
#: no hints, no scale. A saved config that lacks one of these keys was written before the field
#: existed, so its run was trained with this value (:meth:`FaceStudentConfig.from_saved`); the
#: flags that give each back are in docs/faces.md.
LEGACY_DEFAULTS: dict[str, Any] = {"target_space": "raw", "relational_weight": 0.0, "batch_norm": False,
                                   "hint_weight": 0.0, "distance_scale": False}

#: (H, W, 3) uint8 image -> its main face on a canvas, or None (``data.face_identities.FaceCanvasMaker``).
CanvasMaker = Callable[[np.ndarray], "np.ndarray | None"]
#: (student, run_dir) -> the exported graphs by role (``export.faces.export_face_student``).
Exporter = Callable[[nn.Module, Path], dict[str, Path]]


@dataclass
class FaceStudentConfig(TrainingConfig):
    """How the face student is built and trained.

    Attributes:
        student: "dlib" (the teacher's architecture at ``width``, on dlib's 150 px chip) or
            "mobilefacenet" (on the 112 px ArcFace chip; ``init`` must be "scratch").
        width: the dlib student's channels as a fraction of the teacher's (0.5: the thesis's half).
        init: "pruned-teacher" (the teacher's most important channels) or "scratch".
        loss: "regression" to the teacher's descriptors, "arcface" or "cosface" (a margin softmax over
            the pseudo-identities), or "margin-distillation" (see the module docstring).
        margin: the margin loss's margin (ArcFace and margin-distillation: an angle in radians;
            CosFace: a cosine difference); for margin-distillation the largest per-class margin.
            None: the loss's own (:data:`MARGINS`).
        min_margin: margin-distillation's smallest per-class margin, radians.
        scale: the margin losses' logit scale s. 30, not the papers' 64: s only has to exceed
            about ln(C - 1) + ln(P / (1 - P)) for C classes to reach a true-class probability P
            (the bound in Wang et al. 2018): 12 for 2,000 pseudo-identities at P = 0.99. ArcFace's
            64 was set for MS1M's 85k identities; here it would only double every logit's
            gradient on a student that starts in the teacher's space.
        regression_weight: the margin losses' weight of the regression loss (``mse_weight`` and
            ``cosine_weight`` inside it), which holds the student in the teacher's descriptor
            space (10: see the module docstring); 0: the margin alone.
        faces: synthetic source faces drawn (those the detector finds become pseudo-identities);
            0 with ``photos``: the photos' faces alone.
        photos: image files or folders (searched with their sub-folders) of the user's own photos,
            unlabelled; every face the detector finds in them becomes a pseudo-identity too. The
            run's cached canvases are keyed by the files' names, sizes and modification times.
        samples_per_face: augmented pictures of each, the fixed training set.
        steps / learning_rate: Adam steps, cosine-decayed rate.
        mse_weight / cosine_weight: the regression loss's two terms.
        target_space: where the regression loss compares the student's descriptors with the
            teacher's: "raw", "centred" (both less the teacher's mean descriptor over the run's
            pictures, so the cosine sees identity rather than the shared mean; the default) or
            "standardised" (centred, each dimension over its std). The student's output is the
            teacher's descriptor space in all three; only the loss moves.
        relational_weight: weight of the relational term (:func:`relational_term`, RKD-D): every
            pair's distance in the batch against the teacher's; 0: none (default 1).
        batch_norm: train the dlib student with a batch norm after every conv (dlib's network has
            its norms folded into the convs, so the pruned student has none), each started at the
            statistics of the teacher channel it holds (``compress.prune_dlib.with_batch_norm``)
            and folded back into the convs for export: the exported student is dlib's layout.
            "auto" (default): on for the dlib student, off for MobileFaceNet (which has its own).
        hint_weight: weight of the level hints (:class:`LevelHints`): the pruned student's
            feature map at the end of each residual level against the teacher channels it holds;
            0: none. Runs the teacher on every batch. Only with ``init="pruned-teacher"`` and the
            regression loss. "auto" (default): 1 there, 0 otherwise.
        distance_scale: after training, multiply the dlib student's embedding layer by the one
            factor that best matches its pair distances to the teacher's on the first
            :data:`SCALE_PICTURES` training pictures (least squares; :func:`fit_distance_scale`).
            A student that orders faces like the teacher but at compressed distances then
            decides like it at the 0.6 threshold; its descriptors move off the teacher's by that
            factor (its galleries are its own anyway). Not part of training: a finished run
            rerun with or without it exports the scaled or the plain student. "auto" (default):
            on for the dlib student, off for MobileFaceNet (which has no such layer).
        augment: how each picture is drawn.
        finetune: which backbone blocks train when (the stem and the residual blocks are the
            backbone, the embedding layer the head); the default trains everything throughout.
        device: torch device.
    """

    student: str = "dlib"
    width: float = 0.5
    init: str = "pruned-teacher"
    loss: str = "regression"
    margin: float | None = None
    min_margin: float = 0.2
    scale: float = 30.0
    regression_weight: float = 10.0
    faces: int = 2000
    photos: tuple[str, ...] = ()
    samples_per_face: int = 8
    steps: int = 3000
    learning_rate: float = 1e-3
    mse_weight: float = 1.0
    cosine_weight: float = 1.0
    target_space: str = "centred"
    relational_weight: float = 1.0
    batch_norm: bool | Literal["auto"] = AUTO
    hint_weight: float | Literal["auto"] = AUTO
    distance_scale: bool | Literal["auto"] = AUTO
    augment: FaceAugment = field(default_factory=FaceAugment)
    finetune: FineTuneSchedule = field(default_factory=FineTuneSchedule)
    device: str = "cpu"

    def validate(self) -> None:
        super().validate()
        self.require_one_of("student", STUDENTS)
        self.require_one_of("init", INITS)
        if self.student != "dlib" and self.distance_scale is True:
            raise ConfigError(f"FaceStudentConfig: distance_scale scales the dlib student's embedding layer "
                              f"({self.student} has none to scale); leave it 'auto' or false")
        if self.student != "dlib" and self.batch_norm is True:
            raise ConfigError(f"FaceStudentConfig: batch_norm is for the dlib student ({self.student} has its own); "
                              "leave it 'auto' or false")
        if self.student != "dlib" and self.init == "pruned-teacher":
            raise ConfigError(f"FaceStudentConfig: a {self.student} student cannot start from the teacher's channels "
                              "(another architecture); use init='scratch' (--init scratch)")
        self.require_one_of("loss", LOSSES)
        self.require_at_least(0, "faces")
        self.require_at_least(1, "samples_per_face", "steps")
        if self.faces == 0 and not self.photos:
            raise ConfigError("FaceStudentConfig: faces is 0 and no photos are given: no faces to train on "
                              "(--faces 0 needs --photos)")
        self.require_at_least(0, "mse_weight", "cosine_weight", "relational_weight")
        if self.hint_weight != AUTO:
            self.require_at_least(0, "hint_weight")
        if self.hint_weight not in (AUTO, 0) and not self._hints_apply():
            raise ConfigError("FaceStudentConfig: hint_weight needs init='pruned-teacher' (the student's channels are "
                              "the teacher's) and loss='regression'; leave it 'auto' or 0")
        self.require_one_of("target_space", TARGET_SPACES)
        if not 0 < self.width <= 1:
            raise ConfigError(f"FaceStudentConfig.width must be in (0, 1], got {self.width}")
        if not self.learning_rate > 0:
            raise ConfigError(f"FaceStudentConfig.learning_rate must be > 0, got {self.learning_rate}")
        if self.mse_weight == 0 and self.cosine_weight == 0:
            raise ConfigError("FaceStudentConfig: mse_weight and cosine_weight cannot both be 0")
        self._validate_margins()

    def _validate_margins(self) -> None:
        defaults = {item.name: item.default for item in fields(self)}
        unused = {"regression": MARGIN_FIELDS, "margin-distillation": ()}.get(self.loss, ("min_margin",))
        changed = [name for name in unused if getattr(self, name) != defaults[name]]
        if changed:
            users = "the margin losses" if self.loss == "regression" else "margin-distillation"
            raise ConfigError(f"FaceStudentConfig: loss={self.loss!r} does not use {', '.join(changed)} "
                              f"(only {users} do)")
        if self.loss == "regression":
            return
        if not self.scale > 0:
            raise ConfigError(f"FaceStudentConfig.scale must be > 0, got {self.scale}")
        self.require_at_least(0, "regression_weight")
        margin = self.loss_margin()
        if not 0 <= margin <= MAX_MARGIN:
            raise ConfigError(f"FaceStudentConfig.margin must be in [0, {MAX_MARGIN}], got {margin}")
        if self.loss == "margin-distillation" and not 0 <= self.min_margin <= margin:
            raise ConfigError(f"FaceStudentConfig.min_margin must be in [0, margin={margin}] (margin-distillation's "
                              f"smallest and largest per-class margins), got {self.min_margin}")

    def loss_margin(self) -> float:
        """The margin the loss uses: ``margin``, or the loss's own (:data:`MARGINS`) when None."""
        return MARGINS.get(self.loss, 0.0) if self.margin is None else float(self.margin)

    def _hints_apply(self) -> bool:
        return self.student == "dlib" and self.init == "pruned-teacher" and self.loss == "regression"

    def resolved(self) -> FaceStudentConfig:
        """A copy with every "auto" setting made concrete: the measured recipe (docs/faces.md)
        where it applies, off where it does not. ``batch_norm`` and ``distance_scale``: on for the
        dlib student, off for MobileFaceNet; ``hint_weight``: 1 for the dlib student from the pruned
        teacher with the regression loss, else 0. What a run trains with and saves."""
        dlib = self.student == "dlib"
        concrete = {"batch_norm": dlib, "distance_scale": dlib, "hint_weight": 1.0 if self._hints_apply() else 0.0}
        return self.replace(**{name: value for name, value in concrete.items() if getattr(self, name) == AUTO})

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> FaceStudentConfig:
        """The config a run saved (its checkpoint's ``extra["config"]``, its report's ``config``):
        a key it lacks takes its value from before the recipe became the defaults
        (:data:`LEGACY_DEFAULTS`), because the run was trained with that; other keys as
        :meth:`from_dict`."""
        return cls.from_dict({**LEGACY_DEFAULTS, **data})


def saved_config(run_dir: str | Path) -> FaceStudentConfig | None:
    """The config the run in ``run_dir`` was trained with (its latest checkpoint's), read by
    :meth:`FaceStudentConfig.from_saved`, or None when the folder holds no checkpoint with one.
    ``slimvision train face-student`` starts from it when it resumes a run, so a run made under
    older defaults resumes as it was trained."""
    from slimvision.training.checkpoint import CheckpointStore

    saved = CheckpointStore(Path(run_dir) / "checkpoints").latest_extra().get("config")
    return FaceStudentConfig.from_saved(saved) if isinstance(saved, dict) else None


def regression_terms(predicted: torch.Tensor, target: torch.Tensor, mse_weight: float,
                     cosine_weight: float, origin: torch.Tensor | None = None, spread: torch.Tensor | None = None,
                     relational_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """The regression loss of (B, D) descriptors against the teacher's (B, D): ``mse_weight`` x
    the mean squared distance + ``cosine_weight`` x (1 - mean cosine), both measured in the target
    space: the descriptors less ``origin`` (D,), each dimension divided by ``spread`` (D,) (None:
    the raw descriptors); plus ``relational_weight`` x :func:`relational_term`. Also the mean raw
    distance and cosine to the teacher's descriptors (detached, to log; the same in every target
    space, so runs compare)."""
    raw_cosine = nn.functional.cosine_similarity(predicted, target, dim=1).detach()  # (B,)
    distance = ((predicted - target) ** 2).sum(dim=1).detach().sqrt()  # (B,)
    if origin is not None:
        predicted, target = predicted - origin, target - origin
    if spread is not None:
        predicted, target = predicted / spread, target / spread
    squared = ((predicted - target) ** 2).sum(dim=1)  # (B,)
    cosine = nn.functional.cosine_similarity(predicted, target, dim=1)  # (B,)
    loss = mse_weight * squared.mean() + cosine_weight * (1 - cosine).mean()
    out = {"distance": distance.mean(), "cosine": raw_cosine.mean()}
    if origin is not None or spread is not None:
        out["target_space_cosine"] = cosine.detach().mean()
    if relational_weight > 0:
        relational = relational_term(predicted, target)
        loss = loss + relational_weight * relational
        out["relational"] = relational.detach()
    return {"loss": loss, **out}


def relational_term(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distance-wise relational distillation (RKD-D, Park et al. 2019) over a batch: the Huber loss
    between the student's and the teacher's distances of every pair of the batch's (B, D)
    descriptors. Both are divided by the teacher's mean pair distance in the batch (RKD divides each
    side by its own mean; one divisor keeps the distances' scale, which the 0.6 threshold needs).
    Zero for a batch of one."""
    first, second = torch.triu_indices(len(predicted), len(predicted), 1, device=predicted.device)
    if not len(first):
        return predicted.sum() * 0
    ours = ((predicted[first] - predicted[second]) ** 2).sum(dim=1).add(1e-12).sqrt()  # (P,) finite gradient at 0
    theirs = ((target[first] - target[second]) ** 2).sum(dim=1).sqrt()  # (P,)
    unit = theirs.mean().clamp_min(1e-6)
    return nn.functional.smooth_l1_loss(ours / unit, theirs / unit)


@dataclass
class DescriptorSpace:
    """Where the regression loss compares descriptors (``FaceStudentConfig.target_space``): the
    teacher's mean descriptor ``origin`` and per-dimension ``spread`` over the run's cached targets,
    or None for the raw descriptors. Only the loss moves; the student still outputs the teacher's
    descriptors."""

    origin: torch.Tensor | None = None
    spread: torch.Tensor | None = None

    @classmethod
    def of(cls, space: str, targets: np.ndarray) -> DescriptorSpace:
        """The space ``space`` ("raw", "centred", "standardised") of (N, D) teacher descriptors.
        "standardised" divides each dimension by its std over the root mean square of the stds, so
        that every dimension weighs alike and the loss keeps the raw one's scale."""
        if space == "raw":
            return cls()
        values = torch.from_numpy(np.array(targets, np.float32))
        origin = values.mean(dim=0)
        if space == "centred":
            return cls(origin)
        std = values.std(dim=0).clamp_min(1e-6)  # (D,)
        return cls(origin, std / std.pow(2).mean().sqrt())

    def to(self, device: str) -> DescriptorSpace:
        return DescriptorSpace(*(None if v is None else v.to(device) for v in (self.origin, self.spread)))


class LevelHints:
    """Feature distillation for the pruned dlib student (``FaceStudentConfig.hint_weight``): at the
    end of each residual level, the student's feature map against the teacher's channels it was
    pruned from (``narrow_dlib_resnet``'s ``stream_channels``): no adapter is needed, channel i of
    the student *is* a teacher channel. Each level's mean squared difference is divided by the
    teacher's mean square there, and the levels are averaged. It runs the teacher on every batch.

    Call :meth:`loss` right after the student's forward on the same chips; :meth:`close` removes
    the hook it keeps on the student.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, stream_channels: list[list[int]]) -> None:
        ends = np.cumsum([count for _, count in student.config.levels]) - 1
        self.teacher, self.channels = teacher, [torch.tensor(kept) for kept in stream_channels]
        self._student: list[torch.Tensor] = []
        self._teacher: list[torch.Tensor] = []
        self._hooks = [student.blocks[int(end)].register_forward_hook(lambda m, a, out: self._student.append(out))
                       for end in ends]
        self._teacher_hooks = [teacher.blocks[int(end)].register_forward_hook(
            lambda m, a, out: self._teacher.append(out)) for end in ends]

    def loss(self, chips: torch.Tensor) -> torch.Tensor:
        student, self._student = self._student[-len(self.channels):], []
        self._teacher = []
        with torch.no_grad():
            self.teacher(chips)
        terms = []
        for ours, theirs, kept in zip(student, self._teacher, self.channels):
            theirs = theirs[:, kept.to(theirs.device)]  # (B, C_student, H, W)
            terms.append(((ours - theirs) ** 2).mean() / (theirs ** 2).mean().clamp_min(1e-8))
        self._teacher = []
        return torch.stack(terms).mean()

    def close(self) -> None:
        for handle in (*self._hooks, *self._teacher_hooks):
            handle.remove()


class DescriptorRegressionTask:
    """Student descriptors against the teacher's: squared distance and 1 - cosine (in ``space``),
    plus ``relational_weight`` x the relational term and ``hint_weight`` x the level hints."""

    def __init__(self, student: nn.Module, mse_weight: float, cosine_weight: float,
                 space: DescriptorSpace | None = None, relational_weight: float = 0.0,
                 hints: LevelHints | None = None, hint_weight: float = 0.0) -> None:
        self.model = student
        self.mse_weight, self.cosine_weight = mse_weight, cosine_weight
        self.space, self.relational_weight = space or DescriptorSpace(), relational_weight
        self.hints, self.hint_weight = hints, hint_weight

    def __call__(self, batch: dict[str, torch.Tensor], phase: str) -> dict[str, torch.Tensor]:
        out = regression_terms(self.model(batch["chips"]), batch["targets"], self.mse_weight, self.cosine_weight,
                               self.space.origin, self.space.spread, self.relational_weight)
        if self.hints is not None:
            hint = self.hints.loss(batch["chips"])
            out = {**out, "loss": out["loss"] + self.hint_weight * hint, "hint": hint.detach()}
        return out


class MarginTask:
    """A margin-softmax head over the pseudo-identities, plus ``regression_weight`` x the
    regression loss to the teacher's descriptors.

    ``model`` holds the student and the head (``{"student": ..., "head": ...}``), so checkpoints
    keep the head's centres and a resumed run continues them; only the student is exported.
    """

    def __init__(self, student: nn.Module, head: nn.Module, regression_weight: float, mse_weight: float,
                 cosine_weight: float, space: DescriptorSpace | None = None, relational_weight: float = 0.0) -> None:
        self.student, self.head = student, head
        self.model = nn.ModuleDict({"student": student, "head": head})
        self.regression_weight, self.mse_weight, self.cosine_weight = regression_weight, mse_weight, cosine_weight
        self.space, self.relational_weight = space or DescriptorSpace(), relational_weight

    def __call__(self, batch: dict[str, torch.Tensor], phase: str) -> dict[str, torch.Tensor]:
        predicted, labels = self.student(batch["chips"]), batch["identities"]  # (B, D), (B,)
        logits = self.head(predicted, labels)  # (B, C)
        margin_loss = nn.functional.cross_entropy(logits, labels)
        regression = regression_terms(predicted, batch["targets"], self.mse_weight, self.cosine_weight,
                                      self.space.origin, self.space.spread, self.relational_weight)
        loss = margin_loss + self.regression_weight * regression["loss"]
        with torch.no_grad():
            accuracy = (self.head.cosines(predicted).argmax(dim=1) == labels).float().mean()
        logged = {key: value for key, value in regression.items() if key != "loss"}
        return {"loss": loss, "margin_loss": margin_loss.detach(), "regression_loss": regression["loss"].detach(),
                **logged, "accuracy": accuracy}


def build_margin_head(config: FaceStudentConfig, targets: np.ndarray, identities: np.ndarray,
                      num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    """The margin loss's head, from the teacher's cached descriptors of every picture: angles are
    measured from the teacher's mean descriptor; ArcFace's and CosFace's learnable centres start
    at the teacher's class centres, margin-distillation's are those centres, fixed, with margins
    per class from the teacher's angles. Returns the head and what to report of it."""
    from slimvision.training import face_losses

    teacher, labels = torch.from_numpy(np.array(targets, np.float32)), torch.from_numpy(identities).long()
    origin = teacher.mean(dim=0)  # (D,)
    centres = face_losses.teacher_class_centres(teacher, labels, num_classes, origin)  # (C, D)
    margin, dim = config.loss_margin(), teacher.shape[1]
    about: dict[str, Any] = {"classes": num_classes, "scale": config.scale, "margin": margin}
    if config.loss == "arcface":
        return face_losses.ArcFaceHead(num_classes, dim, margin, config.scale, centres, origin), about
    if config.loss == "cosface":
        return face_losses.CosFaceHead(num_classes, dim, margin, config.scale, centres, origin), about
    angles = face_losses.class_angles(teacher, labels, centres, origin)
    margins = face_losses.distillation_margins(angles, config.min_margin, margin)
    about.update(min_margin=config.min_margin, class_margins={
        name: round(float(value), 4) for name, value in zip(("min", "median", "max"), margins.quantile(
            torch.tensor([0.0, 0.5, 1.0])))}, teacher_class_angle_median=round(float(angles.median()), 4))
    return face_losses.MarginDistillationHead(centres, margins, config.scale, origin), about


def make_canvases(config: FaceStudentConfig, canvas_maker: CanvasMaker, progress: bool = True) -> np.ndarray:
    """(N, 256, 256, 3) canvases: the synthetic faces the landmark finder finds (at most
    ``faces``), then every face it finds in ``photos``."""
    from slimvision.data.face_identities import photo_canvases, photo_files, synthetic_canvases

    parts = []
    if config.faces:
        parts.append(synthetic_canvases(config.faces, config.seed, canvas_maker, progress=progress))
        log.info("%d of %d synthetic faces aligned", len(parts[-1]), config.faces)
    if config.photos:
        files = photo_files(config.photos)
        parts.append(photo_canvases(files, canvas_maker, progress=progress))
        log.info("%d faces aligned from %d photos", len(parts[-1]), len(files))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def data_fingerprint(config: FaceStudentConfig) -> dict[str, Any]:
    """What a run's cached canvases are made from: a cache is reused only while this matches.
    Photos enter by name, size and modification time (:func:`photo_stamps`)."""
    key: dict[str, Any] = {"faces": config.faces, "seed": config.seed, "detection_side": DETECTION_SIDE}
    if config.photos:  # absent otherwise, so the caches of runs made before photos existed stay valid
        from slimvision.data.face_identities import photo_files, photo_stamps

        key["photos"] = photo_stamps(photo_files(config.photos))
    return key


def _chips_tensor(chips: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float().div_(255.0)


@torch.no_grad()
def teacher_targets(teacher: nn.Module, dataset: Any, batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """(len(dataset), 128) teacher descriptors of every picture of the dataset."""
    from slimvision.progress import progress_bar

    teacher.eval()
    out = []
    with progress_bar(len(dataset), enabled=progress, desc="teacher descriptors", unit="chip") as bar:
        for start in range(0, len(dataset), batch_size):
            indices = range(start, min(start + batch_size, len(dataset)))
            out.append(teacher(_chips_tensor([dataset[i]["dlib"] for i in indices])).numpy())
            bar.update(len(indices))
    return np.concatenate(out).astype(np.float32)


class _Batches:
    """Shuffled batches of (the student's chips, teacher targets, pseudo-identities), epoch after
    epoch; each picture is a function of (seed, index), so a resumed run draws the same ones."""

    def __init__(self, dataset: Any, targets: np.ndarray, kind: str, batch_size: int, seed: int, device: str) -> None:
        self.dataset, self.targets, self.kind = dataset, targets, kind
        self.batch_size, self.seed, self.device = batch_size, seed, device

    def __iter__(self):
        from slimvision.training.trainer import shuffled_batches

        for indices in shuffled_batches(len(self.dataset), self.batch_size, self.seed):
            items = [self.dataset[i] for i in indices]
            yield {"chips": _chips_tensor([item[self.kind] for item in items]).to(self.device),
                   "targets": torch.from_numpy(self.targets[indices]).to(self.device),
                   "identities": torch.tensor([item["identity"] for item in items], dtype=torch.long).to(self.device)}


def build_student(config: FaceStudentConfig, teacher: nn.Module) -> tuple[nn.Module, dict[str, Any]]:
    """The student: dlib's ResNet at ``config.width`` (the teacher's best channels, or random
    weights), or a MobileFaceNet with random weights."""
    from slimvision.compress.prune_dlib import narrow_dlib_resnet, narrower_config
    from slimvision.models.faces.dlib_resnet import DlibResNet
    from slimvision.models.faces.mobilefacenet import MobileFaceNet

    if config.init == "pruned-teacher":
        return narrow_dlib_resnet(teacher, config.width)
    torch.manual_seed(config.seed)
    if config.student == "mobilefacenet":
        return MobileFaceNet(), {"init": "scratch"}
    return DlibResNet(narrower_config(teacher.config, config.width)), {"init": "scratch"}


#: Training pictures (the first of the fixed set) the distance scale is fitted on.
SCALE_PICTURES = 512


def fit_distance_scale(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The factor k minimising sum (k d_ours - d_theirs)^2 over every pair of (N, D) descriptors."""
    first, second = np.triu_indices(len(ours), 1)
    mine = np.linalg.norm(ours[first] - ours[second], axis=1)
    reference = np.linalg.norm(theirs[first] - theirs[second], axis=1)
    if not (mine ** 2).sum() > 0:
        raise SlimvisionError("the student maps every picture to one point: no distance scale fits")
    return float((mine * reference).sum() / (mine ** 2).sum())


@torch.no_grad()
def training_distance_scale(student: nn.Module, dataset: Any, targets: np.ndarray,
                            count: int = SCALE_PICTURES) -> float:
    """:func:`fit_distance_scale` of the student's descriptors of the first ``count`` training
    pictures against the teacher's cached ones."""
    count = min(count, len(dataset))
    ours = np.concatenate([student(_chips_tensor([dataset[i]["dlib"] for i in range(start, min(start + 64, count))]))
                           .numpy() for start in range(0, count, 64)])
    return fit_distance_scale(ours, targets[:count])


#: Training pictures (the first of the fixed set) whose statistics start the batch norms.
BATCH_NORM_CHIPS = 256


def add_batch_norm(student: nn.Module, teacher: nn.Module, init_report: dict[str, Any], dataset: Any,
                   config: FaceStudentConfig) -> nn.Module:
    """The dlib student with a batch norm after every conv: from the pruned teacher, each started at
    the statistics of its teacher channel over the first :data:`BATCH_NORM_CHIPS` training
    pictures; from scratch, at PyTorch's defaults."""
    from slimvision.compress.prune_dlib import with_batch_norm

    if config.init != "pruned-teacher":
        return with_batch_norm(student)
    count = min(BATCH_NORM_CHIPS, len(dataset))
    chips = [_chips_tensor([dataset[i]["dlib"] for i in range(start, min(start + 64, count))])
             for start in range(0, count, 64)]
    return with_batch_norm(student, teacher, init_report, chips)


def backbone_and_head(student: nn.Module) -> tuple[list[nn.Module], list[nn.Parameter]]:
    """The student's backbone blocks, input first, and its head's parameters, for
    :class:`~slimvision.training.trainer.FineTuneSchedule`: dlib's stem and residual blocks and
    its embedding layer; MobileFaceNet's blocks and its global depthwise + linear head."""
    from slimvision.models.faces.mobilefacenet import MobileFaceNet

    if isinstance(student, MobileFaceNet):
        return list(student.blocks), list(student.head.parameters())
    stem = nn.ModuleList([student.stem, student.stem_norm])
    return [stem, *student.blocks], list(student.embedding.parameters())


def _cached(path: Path, fingerprint: dict[str, Any], make: Callable[[], np.ndarray]) -> np.ndarray:
    """``make()``, stored at ``path`` with a fingerprint of what made it; reused while that matches."""
    from slimvision.compress.distill import npy_bytes
    from slimvision.io.atomic import write_bytes_atomic, write_text_atomic

    stamp = path.with_suffix(".json")
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == fingerprint:
        return np.load(path, mmap_mode="r")
    write_bytes_atomic(path, npy_bytes(make()), overwrite=True)
    write_text_atomic(stamp, json.dumps(fingerprint), overwrite=True)
    return np.load(path, mmap_mode="r")


def check_batch_fits(batch_size: int, dataset: Any, faces: int, run_dir: Path) -> None:
    """One line (ConfigError) when the pictures cannot fill a batch: known only once the faces
    are aligned (MTCNN may miss some), and a batch never filled would stall training silently."""
    if batch_size > len(dataset):
        raise ConfigError(f"{run_dir}: a batch of {batch_size} is more than the {len(dataset)} pictures of the "
                          f"{faces} faces found; lower --batch-size or add faces (--faces, --samples-per-face)")


def run_pictures(config: FaceStudentConfig, canvases: np.ndarray, run_dir: Path, data_key: dict[str, Any],
                 batch_size: int, teacher: Callable[[], nn.Module], progress: bool
                 ) -> tuple[str, Any, np.ndarray]:
    """(chip kind, pictures, teacher descriptors) of a run: ``samples_per_face`` augmented chips
    of each canvas, as the student takes them, and the teacher's descriptors of their dlib chips,
    cached in the run folder (``teacher()`` is called only when the cache is remade). The
    training run and its int8 fine-tune (``training.face_qat``) read the same ones.

    Raises:
        ConfigError: the pictures cannot fill one batch of ``batch_size``.
    """
    from slimvision.data.face_identities import PseudoIdentities

    kind = STUDENT_CHIPS[config.student]
    dataset = PseudoIdentities(canvases, config.augment, seed=config.seed, kinds=(kind,),
                               length=config.samples_per_face * len(canvases))
    check_batch_fits(batch_size, dataset, len(canvases), run_dir)
    targets = _cached(run_dir / TARGETS_FILE,
                      {**data_key, "samples_per_face": config.samples_per_face, "augment": config.augment.fingerprint()},
                      lambda: teacher_targets(teacher(), dataset, progress=progress))
    return kind, dataset, np.asarray(targets)


def train_face_student(config: FaceStudentConfig, run_dir: str | Path, *, canvas_maker: CanvasMaker,
                       export: Exporter, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the student in ``run_dir``; export it and return the run's report.

    Writes ``run_dir/student/`` (safetensors + config), what ``export`` writes, and ``report.json``.
    """
    from slimvision.assets import DLIB_FACE_RESNET
    from slimvision.io.atomic import write_text_atomic
    from slimvision.models.faces.dlib_port import load_dlib_resnet
    from slimvision.models.weights import save_model
    from slimvision.training.checkpoint import CheckpointStore
    from slimvision.training.trainer import (
        CosineDecay, StagedUnfreezing, Trainer, TrainerConfig, check_same_config,
    )

    config = config.resolved()  # what the run trains with and saves: no "auto" left
    run_dir = Path(run_dir)
    check_same_config(CheckpointStore(run_dir / "checkpoints"), config, RESUMABLE_CHANGES,  # before any setup
                      saved_defaults=LEGACY_DEFAULTS)
    data_key = data_fingerprint(config)  # a missing photo folder is refused before the run folder is made
    new_folder = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_flush_denormal(True)  # dlib's weights make denormals: 10x slower without this
    try:
        canvases = _cached(run_dir / CANVASES_FILE, data_key, lambda: make_canvases(config, canvas_maker, progress))
    except BaseException:  # a broken photo, no face found, Ctrl-C: leave no empty run folder behind
        if new_folder and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    teacher = load_dlib_resnet(DLIB_FACE_RESNET.path()).eval().requires_grad_(False)
    kind, dataset, targets = run_pictures(config, canvases, run_dir, data_key, config.batch_size, lambda: teacher,
                                          progress)
    student, init_report = build_student(config, teacher)
    if config.batch_norm:
        student = add_batch_norm(student, teacher, init_report, dataset, config)
    student.to(config.device)
    blocks, head = backbone_and_head(student)
    loss_report: dict[str, Any] = {"loss": config.loss, "target_space": config.target_space,
                                   "relational_weight": config.relational_weight}
    space = DescriptorSpace.of(config.target_space, targets).to(config.device)
    hints = None
    if config.hint_weight:
        teacher.to(config.device)
        hints = LevelHints(teacher, student, init_report["stream_channels"])
        loss_report["hint_weight"] = config.hint_weight
    if config.loss == "regression":
        task: DescriptorRegressionTask | MarginTask = DescriptorRegressionTask(
            student, config.mse_weight, config.cosine_weight, space, config.relational_weight, hints,
            config.hint_weight)
    else:
        margin_head, about = build_margin_head(config, targets, dataset.identities(), len(canvases))
        margin_head.to(config.device)
        loss_report.update(about)
        task = MarginTask(student, margin_head, config.regression_weight, config.mse_weight, config.cosine_weight,
                          space, config.relational_weight)
        head = [*head, *(p for p in margin_head.parameters() if p.requires_grad)]  # the centres train with the head
    optimizer = torch.optim.Adam(config.finetune.parameter_groups(head, blocks, config.learning_rate))
    trainer = Trainer(task, {"main": optimizer},
                      TrainerConfig(steps=config.steps, log_every=config.log_every,
                                    checkpoint_every=config.checkpoint_every, progress=progress),
                      run_dir=run_dir / "checkpoints", extra={"config": config.to_dict()})
    start = trainer.resume()
    batches = CosineDecay(_Batches(dataset, targets, kind, config.batch_size, config.seed, config.device),
                          optimizer, config.finetune.base_rates(config.learning_rate, blocks), start, config.steps)
    batches = StagedUnfreezing(batches, blocks, config.finetune, start)
    trainer.fit(batches, resume=False)
    if hints is not None:
        hints.close()
    student.cpu().eval()
    if config.batch_norm:
        from slimvision.models.faces.dlib_resnet import fold_batch_norm

        student = fold_batch_norm(student)  # dlib's layout: the norms inside the convs
    if config.distance_scale:
        factor = training_distance_scale(student, dataset, targets)
        with torch.no_grad():
            student.embedding.weight.mul_(factor)
        loss_report["distance_scale"] = round(factor, 6)
    save_model(student, run_dir / "student", overwrite=True)
    paths = export(student, run_dir)
    report = {"config": config.to_dict(), "steps_done": trainer.step, "resumed_from": start,
              "faces_aligned": int(len(canvases)), "pictures": len(dataset),
              "params": sum(p.numel() for p in student.parameters()),
              "teacher_params": sum(p.numel() for p in teacher.parameters()),
              "init": {key: value for key, value in init_report.items() if key not in ("block_channels",)},
              "loss": loss_report,
              "train_log": {"steps": trainer.log.steps, **trainer.log.values},
              "exports": {role: {"file": path.name, "bytes": path.stat().st_size} for role, path in paths.items()}}
    write_text_atomic(run_dir / "report.json", json.dumps(report, indent=2) + "\n", overwrite=True)
    return report
