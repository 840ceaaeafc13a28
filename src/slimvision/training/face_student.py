"""Distil dlib's face ResNet into a narrower student: pseudo-identity faces, the teacher's descriptors.

The student is the teacher's own architecture at ``width`` x its channels (the thesis behind the
faces system compares dlib's ResNet at half the channels in its tables 16-18), started from the
teacher's most important channels (:mod:`slimvision.compress.prune_dlib`) and trained to give
the teacher's 128-d descriptor for the same chip, so it can replace the teacher in the same
pipeline, with the same 0.6 threshold.

Data (:mod:`slimvision.data.face_identities`): ``faces`` synthetic faces from gan-face-generate,
aligned onto canvases by a landmark finder the caller hands in (the detector lives in the
inference layer), and ``samples_per_face`` augmented pictures of each (pose, light, blur, noise,
JPEG, grey). No real photo is trained on: every real face that ships stays for the agreement
check. The teacher's descriptors of the fixed set of pictures are computed once into the run
folder (``targets.npy``), so epochs cost the student's time only.

Loss (``loss="regression"``): ``mse_weight`` x the squared Euclidean distance to the teacher's
descriptor (the distance the 0.6 threshold is set on) + ``cosine_weight`` x (1 - cosine).

Example:
    >>> config = FaceStudentConfig(faces=2000, steps=3000)
    >>> report = train_face_student(config, "runs/face-half", canvases=maker, export=export_embedder)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
LOSSES = ("regression",)
#: The run folder's files: the aligned canvases, the teacher's descriptors of every picture.
CANVASES_FILE, TARGETS_FILE = "canvases.npy", "targets.npy"
#: Settings a resumed run may change (the step count, to train longer; intervals; the device).
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "log_every", "device")

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
        loss: "regression" to the teacher's descriptors.
        faces: synthetic source faces drawn (those the detector finds become pseudo-identities).
        samples_per_face: augmented pictures of each, the fixed training set.
        steps / learning_rate: Adam steps, cosine-decayed rate.
        mse_weight / cosine_weight: the regression loss's two terms.
        augment: how each picture is drawn.
        finetune: which backbone blocks train when (the stem and the residual blocks are the
            backbone, the embedding layer the head); the default trains everything throughout.
        device: torch device.
    """

    student: str = "dlib"
    width: float = 0.5
    init: str = "pruned-teacher"
    loss: str = "regression"
    faces: int = 2000
    samples_per_face: int = 8
    steps: int = 3000
    learning_rate: float = 1e-3
    mse_weight: float = 1.0
    cosine_weight: float = 1.0
    augment: FaceAugment = field(default_factory=FaceAugment)
    finetune: FineTuneSchedule = field(default_factory=FineTuneSchedule)
    device: str = "cpu"

    def validate(self) -> None:
        super().validate()
        self.require_one_of("student", STUDENTS)
        self.require_one_of("init", INITS)
        if self.student != "dlib" and self.init == "pruned-teacher":
            raise ConfigError(f"FaceStudentConfig: a {self.student} student cannot start from the teacher's channels "
                              "(another architecture); use init='scratch' (--init scratch)")
        self.require_one_of("loss", LOSSES)
        self.require_at_least(1, "faces", "samples_per_face", "steps")
        self.require_at_least(0, "mse_weight", "cosine_weight")
        if not 0 < self.width <= 1:
            raise ConfigError(f"FaceStudentConfig.width must be in (0, 1], got {self.width}")
        if not self.learning_rate > 0:
            raise ConfigError(f"FaceStudentConfig.learning_rate must be > 0, got {self.learning_rate}")
        if self.mse_weight == 0 and self.cosine_weight == 0:
            raise ConfigError("FaceStudentConfig: mse_weight and cosine_weight cannot both be 0")


class DescriptorRegressionTask:
    """Student descriptors against the teacher's: squared distance and 1 - cosine."""

    def __init__(self, student: nn.Module, mse_weight: float, cosine_weight: float) -> None:
        self.model = student
        self.mse_weight, self.cosine_weight = mse_weight, cosine_weight

    def __call__(self, batch: dict[str, torch.Tensor], phase: str) -> dict[str, torch.Tensor]:
        predicted, target = self.model(batch["chips"]), batch["targets"]
        squared = ((predicted - target) ** 2).sum(dim=1)
        cosine = nn.functional.cosine_similarity(predicted, target, dim=1)
        loss = self.mse_weight * squared.mean() + self.cosine_weight * (1 - cosine).mean()
        return {"loss": loss, "distance": squared.detach().sqrt().mean(), "cosine": cosine.detach().mean()}


def make_canvases(config: FaceStudentConfig, canvas_maker: CanvasMaker, progress: bool = True) -> np.ndarray:
    """(N, 256, 256, 3) canvases of the synthetic faces the landmark finder finds (N <= ``faces``)."""
    from slimvision.data.face_identities import synthetic_canvases

    canvases = synthetic_canvases(config.faces, config.seed, canvas_maker, progress=progress)
    log.info("%d of %d synthetic faces aligned", len(canvases), config.faces)
    return canvases


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
    """Shuffled batches of (the student's chips, teacher targets), epoch after epoch."""

    def __init__(self, dataset: Any, targets: np.ndarray, kind: str, batch_size: int, seed: int, device: str) -> None:
        self.dataset, self.targets, self.kind = dataset, targets, kind
        self.batch_size, self.seed, self.device = batch_size, seed, device

    def __iter__(self):
        from slimvision.training.trainer import shuffled_batches

        for indices in shuffled_batches(len(self.dataset), self.batch_size, self.seed):
            yield {"chips": _chips_tensor([self.dataset[i][self.kind] for i in indices]).to(self.device),
                   "targets": torch.from_numpy(self.targets[indices]).to(self.device)}


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


def backbone_and_head(student: nn.Module) -> tuple[list[nn.Module], list[nn.Parameter]]:
    """The student's backbone blocks, input first, and its head's parameters, for
    :class:`~slimvision.training.trainer.FineTuneSchedule`: dlib's stem and residual blocks and
    its embedding layer; MobileFaceNet's blocks and its global depthwise + linear head."""
    from slimvision.models.faces.mobilefacenet import MobileFaceNet

    if isinstance(student, MobileFaceNet):
        return list(student.blocks), list(student.head.parameters())
    return [student.stem, *student.blocks], list(student.embedding.parameters())


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


def train_face_student(config: FaceStudentConfig, run_dir: str | Path, *, canvas_maker: CanvasMaker,
                       export: Exporter, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the student in ``run_dir``; export it and return the run's report.

    Writes ``run_dir/student/`` (safetensors + config), what ``export`` writes, and ``report.json``.
    """
    from slimvision.assets import DLIB_FACE_RESNET
    from slimvision.data.face_identities import PseudoIdentities
    from slimvision.io.atomic import write_text_atomic
    from slimvision.models.faces.dlib_port import load_dlib_resnet
    from slimvision.models.weights import save_model
    from slimvision.training.checkpoint import CheckpointStore
    from slimvision.training.trainer import (
        CosineDecay, StagedUnfreezing, Trainer, TrainerConfig, check_same_config,
    )

    config.validate()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_flush_denormal(True)  # dlib's weights make denormals: 10x slower without this
    check_same_config(CheckpointStore(run_dir / "checkpoints"), config, RESUMABLE_CHANGES)  # before any setup
    data_key = {"faces": config.faces, "seed": config.seed, "detection_side": DETECTION_SIDE}
    canvases = _cached(run_dir / CANVASES_FILE, data_key, lambda: make_canvases(config, canvas_maker, progress))
    kind = STUDENT_CHIPS[config.student]
    dataset = PseudoIdentities(canvases, config.augment, seed=config.seed, kinds=(kind,),
                               length=config.samples_per_face * len(canvases))
    teacher = load_dlib_resnet(DLIB_FACE_RESNET.path()).eval().requires_grad_(False)
    targets = _cached(run_dir / TARGETS_FILE,
                      {**data_key, "samples_per_face": config.samples_per_face, "augment": config.augment.to_dict()},
                      lambda: teacher_targets(teacher, dataset, progress=progress))
    student, init_report = build_student(config, teacher)
    student.to(config.device)
    task = DescriptorRegressionTask(student, config.mse_weight, config.cosine_weight)
    blocks, head = backbone_and_head(student)
    optimizer = torch.optim.Adam(config.finetune.parameter_groups(head, blocks, config.learning_rate))
    trainer = Trainer(task, {"main": optimizer},
                      TrainerConfig(steps=config.steps, log_every=config.log_every,
                                    checkpoint_every=config.checkpoint_every, progress=progress),
                      run_dir=run_dir / "checkpoints", extra={"config": config.to_dict()})
    start = trainer.resume()
    batches = CosineDecay(_Batches(dataset, np.asarray(targets), kind, config.batch_size, config.seed, config.device),
                          optimizer, config.finetune.base_rates(config.learning_rate, blocks), start, config.steps)
    batches = StagedUnfreezing(batches, blocks, config.finetune, start)
    trainer.fit(batches, resume=False)
    student.cpu().eval()
    save_model(student, run_dir / "student", overwrite=True)
    paths = export(student, run_dir)
    report = {"config": config.to_dict(), "steps_done": trainer.step, "resumed_from": start,
              "faces_aligned": int(len(canvases)), "pictures": len(dataset),
              "params": sum(p.numel() for p in student.parameters()),
              "teacher_params": sum(p.numel() for p in teacher.parameters()),
              "init": {key: value for key, value in init_report.items() if key not in ("block_channels",)},
              "train_log": {"steps": trainer.log.steps, **trainer.log.values},
              "exports": {role: {"file": path.name, "bytes": path.stat().st_size} for role, path in paths.items()}}
    write_text_atomic(run_dir / "report.json", json.dumps(report, indent=2) + "\n", overwrite=True)
    return report
