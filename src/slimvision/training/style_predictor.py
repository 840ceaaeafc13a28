"""Distil the shipped style predictor (MobileNetV2, int8, ONNX) into a narrower MobileNetV2 student.

The recipe of the paper we build on (Inception-v3 -> MobileNetV2, MSE between style vectors),
one step further down: the teacher is already MobileNetV2 at width 1.0; students run at width
0.35-0.75. Everything a run needs is local: style samples from installed packages plus
procedural textures (``slimvision.data.style_images``), teacher vectors cached on disk (the
teacher runs once per sample), checkpoints every few hundred steps (a killed run resumes), and
at the end the student as safetensors + config, as ONNX (checked against torch), and a report
with the mean cosine to the teacher on held-out style images (whole files never trained on).

Example (the command that trains the shipped student; see ``slimvision train style-predictor``):
    >>> report = distill_predictor(PredictorDistillConfig(width_multiplier=0.35), "runs/p035")  # doctest: +SKIP
    >>> report["held_out"]["mean_cosine"]                                                        # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimvision.data.style_families import STYLE_DATA
from slimvision.training.config import TrainingConfig
from slimvision.errors import ConfigError
from slimvision.models.style.config import MOBILENET_V2_STAGES, StylePredictorConfig

log = logging.getLogger(__name__)

STYLE_SIZE = 256  # the teacher's fixed input size
INITS = ("pruned-teacher", "scratch")
TEACHERS = ("fp32", "int8")
#: Settings a resumed run may change (train longer, checkpoint or log at other steps, another
#: device); any other difference from the saved config refuses to resume.
RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every", "log_every", "device"})


@dataclass
class PredictorDistillConfig(TrainingConfig):
    width_multiplier: float = 0.35
    #: Channels of the last 1x1 conv (MobileNetV2: 1280); the biggest single layer of a narrow student.
    last_channels: int = 1280
    steps: int = 3000
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 4e-5
    samples: int = 20_000
    held_out_fraction: float = 0.15
    texture_fraction: float = 0.25
    #: Where the style samples come from: "files" (``data.style_images``; what the shipped
    #: students used) or "families" (``data.style_families``: training families, real crops and
    #: collages; held-out families, origins, hashed files and their copies never seen;
    #: ``texture_fraction`` is then unused).
    style_data: str = "files"
    device: str = "cpu"
    #: "pruned-teacher": start from the teacher's own weights, its weakest channels pruned away to
    #: the student's widths (``compress.prune.prune_to_match``); "scratch": random weights.
    init: str = "pruned-teacher"
    #: "fp32": the shipped predictor with its weights dequantized (the float model it was made
    #: from); "int8": the graph as shipped, activation rounding included. Held-out scores are
    #: reported against both.
    teacher: str = "fp32"
    #: 2: MobileNetV2's 3x3 stride-2 stem. 4: a 4x4 stride-4 "patchify" stem, and the first
    #: stride-2 stage runs at stride 1, so the network never computes at half resolution (those
    #: thin, wide maps cost a narrow student a third of its ONNX Runtime time).
    stem_stride: int = 2
    #: Blocks kept in each of MobileNetV2's seven stages (empty: all of them, 1,2,3,4,3,3,1).
    #: Every block adds a fixed cost per run however thin it is.
    stage_repeats: tuple[int, ...] = ()

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "steps", "samples", "last_channels")
        self.require_one_of("init", INITS)
        self.require_one_of("teacher", TEACHERS)
        self.require_one_of("style_data", STYLE_DATA)
        name = type(self).__name__
        if not 0 < self.width_multiplier <= 2:
            raise ConfigError(f"{name}.width_multiplier must be in (0, 2], got {self.width_multiplier}")
        if self.stem_stride not in (2, 4):
            raise ConfigError(f"{name}.stem_stride must be 2 or 4, got {self.stem_stride}")
        full = [stage[2] for stage in MOBILENET_V2_STAGES]
        if self.stage_repeats and (len(self.stage_repeats) != len(full)
                                   or not all(1 <= kept <= most for kept, most in zip(self.stage_repeats, full))):
            raise ConfigError(f"{name}.stage_repeats must keep 1 to all blocks of each of the {len(full)} "
                              f"stages (MobileNetV2 has {full}), got {list(self.stage_repeats)}")

    def student_config(self) -> StylePredictorConfig:
        """The deployed student's network (no batch norms)."""
        stages = [list(stage) for stage in MOBILENET_V2_STAGES]
        for stage, kept in zip(stages, self.stage_repeats):
            stage[2] = kept
        if self.stem_stride == 4:  # the stem takes over the first stride-2 stage's stride
            next(stage for stage in stages if stage[3] == 2)[3] = 1
        return StylePredictorConfig(width_multiplier=self.width_multiplier, last_channels=self.last_channels,
                                    stem_kernel_size=3 if self.stem_stride == 2 else 4,
                                    stem_stride=self.stem_stride, stages=tuple(map(tuple, stages)))


def _batches(dataset: Any, batch_size: int, seed: int, device: str) -> Iterator[dict[str, Any]]:
    """Shuffled epochs of {"inputs": (B, 3, 256, 256) float in [0, 1], "ids": [...]}."""
    from slimvision.training.trainer import shuffled_batches

    for indices in shuffled_batches(len(dataset), batch_size, seed):
        ids, images = zip(*(dataset[i] for i in indices))
        pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
        yield {"inputs": pixels.to(device), "ids": list(ids)}


def evaluate_predictor(student: torch.nn.Module, teacher: Any, sources: list[Any],
                       reference_mean: np.ndarray | None = None) -> dict[str, Any]:
    """Student vs teacher vectors on each file's centre square (the pipeline's crop).

    Style vectors share a large common component, so plain cosine flatters: a constant vector
    (the mean of the training vectors, ``reference_mean``) already scores high. With it the
    report also gives the baseline's cosine, the *centred* cosine (both vectors minus the mean)
    and R^2 = 1 - |student - teacher|^2 / |teacher - mean|^2 (0 = no better than the mean).
    """
    from slimvision.data.style_images import load_rgb
    from slimvision.io.pixels import centre_square

    names, predicted, targets = [], [], []
    student.eval()
    device = next(student.parameters()).device
    with torch.no_grad():
        for source in sources:
            square = np.array(centre_square(load_rgb(source.path), STYLE_SIZE))
            pixels = torch.from_numpy(square).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, 256, 256)
            targets.append(teacher(pixels.numpy()).reshape(-1))
            predicted.append(student(pixels.to(device)).cpu().numpy().reshape(-1))
            names.append(source.name)
    if not names:
        return {"images": 0, "mean_cosine": None, "min_cosine": None, "per_image": {}}
    student_vectors, teacher_vectors = np.stack(predicted), np.stack(targets)  # (N, 100)
    cosines = _cosine(student_vectors, teacher_vectors)
    report: dict[str, Any] = {"images": len(names), "mean_cosine": float(cosines.mean()),
                              "min_cosine": float(cosines.min()),
                              "per_image": dict(zip(names, map(float, cosines)))}
    if reference_mean is not None:
        centred_teacher = teacher_vectors - reference_mean
        report["baseline_mean_vector_cosine"] = float(_cosine(np.broadcast_to(reference_mean, teacher_vectors.shape),
                                                              teacher_vectors).mean())
        report["centred_cosine"] = float(_cosine(student_vectors - reference_mean, centred_teacher).mean())
        report["r2"] = float(1 - ((student_vectors - teacher_vectors) ** 2).sum() / (centred_teacher ** 2).sum())
    return report


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def cached_mean(cache_folder: Path) -> np.ndarray | None:
    """Mean of the teacher vectors cached during training (the "predict the average" baseline)."""
    vectors = [np.load(path).reshape(-1) for path in sorted(cache_folder.glob("*.npy"))]
    return np.mean(vectors, axis=0) if vectors else None


@dataclass
class PredictorExports:
    """What the export step wrote for a trained predictor student (:func:`slimvision.export.style.export_predictor`).

    Attributes:
        onnx_path: the student's own graph (NCHW), checked against torch.
        max_abs_diff: that check's largest difference.
        pipeline_model: the NHWC graph with fp16-stored weights, what the style pipeline runs.
        int8_weights: the same with int8-stored weights (for the report's comparison).
    """

    onnx_path: Path
    max_abs_diff: float
    pipeline_model: Path
    int8_weights: Path


#: The export step a distillation is handed: (student, run_dir, weights file) -> what it wrote.
#: Export sits above training, so training is given it (``export.style.export_predictor``).
PredictorExporter = Callable[[torch.nn.Module, Path, Path], PredictorExports]


def distill_predictor(config: PredictorDistillConfig, run_dir: str | Path, progress: bool = True, *,
                      export: PredictorExporter) -> dict[str, Any]:
    """Train (or resume) a student in ``run_dir``; write the student, its ONNX exports (through
    ``export``, e.g. :func:`slimvision.export.style.export_predictor`) and a report.

    Raises:
        ConfigError: ``run_dir`` was started with other settings (see :data:`RESUMABLE_CHANGES`).
    """
    from slimvision.assets import STYLE_TEACHER_PREDICTOR
    from slimvision.compress.distill import OnnxTeacher, TeacherCache, VectorDistillTask
    from slimvision.compress.fold import fold_batch_norms
    from slimvision.data.style_images import StyleImageDataset, find_style_sources, split_sources
    from slimvision.graph.precision import with_float_weights
    from slimvision.io.atomic import write_text_atomic
    from slimvision.models.style import StylePredictor
    from slimvision.models.weights import save_model
    from slimvision.training.checkpoint import CheckpointStore
    from slimvision.training.trainer import CosineDecay, Trainer, TrainerConfig, check_same_config

    run_dir = Path(run_dir)
    check_same_config(CheckpointStore(run_dir / "checkpoints"), config, RESUMABLE_CHANGES)  # before any setup
    torch.manual_seed(config.seed)
    if config.style_data == "families":
        from slimvision.data.style_families import family_training_data

        dataset, held_out = family_training_data(config.samples, seed=config.seed, size=STYLE_SIZE,
                                                 held_out_fraction=config.held_out_fraction)
        train_sources = dataset.real_sources
    else:
        train_sources, held_out = split_sources(find_style_sources(), config.held_out_fraction)
        dataset = StyleImageDataset(train_sources, config.samples, seed=config.seed, size=STYLE_SIZE,
                                    texture_fraction=config.texture_fraction)
    shipped = OnnxTeacher(STYLE_TEACHER_PREDICTOR.path(), layout="NHWC")
    teacher = shipped if config.teacher == "int8" else OnnxTeacher(
        with_float_weights(STYLE_TEACHER_PREDICTOR.path()), layout="NHWC")
    # Trains with a batch norm after every conv; they are folded away before saving.
    deployed = config.student_config()
    student = StylePredictor(replace(deployed, train_batch_norm=True))
    if config.init == "pruned-teacher":
        _start_from_teacher(student, deployed, _batches(dataset, config.batch_size, config.seed + 7919, "cpu"))
    student.to(config.device)
    task = VectorDistillTask(student, teacher, TeacherCache(run_dir / "teacher-cache", teacher.fingerprint))
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    trainer = Trainer(task, {"main": optimizer},
                      TrainerConfig(steps=config.steps, log_every=config.log_every,
                                    checkpoint_every=config.checkpoint_every, progress=progress),
                      run_dir=run_dir / "checkpoints", extra={"config": config.to_dict()})
    start = trainer.resume()
    batches = CosineDecay(_batches(dataset, config.batch_size, config.seed + start, config.device),
                           optimizer, config.learning_rate, start, config.steps)
    trainer.fit(batches, resume=False)
    student.eval().cpu()
    fold_batch_norms(student)
    student = _without_norms(student, deployed)
    folder = save_model(student, run_dir / "student", overwrite=True)
    exported = export(student, run_dir, folder / "model.safetensors")
    pipeline_file, int8_file = exported.pipeline_model, exported.int8_weights
    mean = cached_mean(run_dir / "teacher-cache")  # one read of the (up to `samples`) cached vectors
    report = {"config": config.to_dict(), "steps_done": trainer.step, "resumed_from": start,
              "params": sum(p.numel() for p in student.parameters()),
              "onnx_bytes": exported.onnx_path.stat().st_size,
              "export_max_abs_diff": exported.max_abs_diff,
              "train_log": {"steps": trainer.log.steps, **trainer.log.values},  # the whole run's
              "held_out": evaluate_predictor(student, teacher, held_out, mean),
              "held_out_vs_shipped_int8": (evaluate_predictor(student, shipped, held_out, mean)
                                           if teacher is not shipped else None),
              "pipeline_model": {"path": pipeline_file.name, "bytes": pipeline_file.stat().st_size,
                                 "held_out": evaluate_predictor(_with_stored_weights(student, "fp16"), teacher,
                                                                held_out, mean)},
              # int8-stored weights would be a quarter of fp32, but cost this student most of its
              # centred accuracy (kept in the report to show why fp16 storage ships).
              "int8_weights": {"bytes": int8_file.stat().st_size,
                               "held_out": evaluate_predictor(_with_stored_weights(student, "int8"), teacher,
                                                              held_out, mean)},
              "teacher_cache": {"hits": task.cache.hits, "misses": task.cache.misses} if task.cache else None}
    write_text_atomic(run_dir / "report.json", json.dumps(report, indent=2) + "\n", overwrite=True)
    log.info("student: %d params, held-out mean cosine %.4f", report["params"], report["held_out"]["mean_cosine"])
    return report


@torch.no_grad()
def _with_stored_weights(student: torch.nn.Module, storage: str) -> torch.nn.Module:
    """A copy of ``student`` whose conv and linear weights are rounded as the fp16 / int8 files store them."""
    import copy

    from slimvision.compress.quantize import symmetric_int8

    rounded = copy.deepcopy(student)
    for layer in rounded.modules():
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            if storage == "fp16":
                layer.weight.copy_(layer.weight.half().float())
                continue
            values, scales = symmetric_int8(layer.weight.numpy(), axis=0)
            shape = (-1,) + (1,) * (values.ndim - 1)
            layer.weight.copy_(torch.from_numpy(values.astype(np.float32) * scales.reshape(shape)))
    return rounded


def _start_from_teacher(student: torch.nn.Module, deployed: Any, batches: Iterator[dict[str, Any]]) -> None:
    """Fill ``student`` with the teacher's most important channels, its batch norms set to
    identity on a few training batches (a resumed run then overwrites all of it)."""
    from slimvision.compress.fold import calibrate_identity_batch_norms
    from slimvision.compress.prune import prune_to_match
    from slimvision.models.style import StylePredictor
    from slimvision.models.style.port import port_predictor
    from slimvision.models.style.predictor import shallower_copy

    plain = StylePredictor(deployed)
    teacher = shallower_copy(port_predictor(), deployed)  # same network when the student is as deep
    report = prune_to_match(teacher, plain, torch.rand(1, 3, STYLE_SIZE, STYLE_SIZE))
    result = student.load_state_dict(plain.state_dict(), strict=False)
    if result.unexpected_keys or not all(_is_norm_key(student, key) for key in result.missing_keys):
        raise RuntimeError(f"pruned teacher does not fit the student: {result}")
    calibrate_identity_batch_norms(student, (batch["inputs"] for batch in batches), max_batches=4)
    log.info("student initialised from the teacher: %s", report.summary())


def _is_norm_key(model: torch.nn.Module, key: str) -> bool:
    owner = model.get_submodule(key.rsplit(".", 1)[0])
    return isinstance(owner, torch.nn.BatchNorm2d)


def _without_norms(student: torch.nn.Module, deployed: Any) -> torch.nn.Module:
    """The folded student's weights in the same network built without batch norms (what ships)."""
    from slimvision.models.style import StylePredictor

    plain = StylePredictor(deployed)
    plain.load_state_dict(student.state_dict())
    return plain.eval()
