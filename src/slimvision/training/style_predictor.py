"""Distil the shipped style predictor (MobileNetV2, int8, ONNX) into a narrower MobileNetV2 student.

The recipe of the paper we build on (Inception-v3 -> MobileNetV2, MSE between style vectors),
one step further down: the teacher is already MobileNetV2 at width 1.0; students run at width
0.35-0.75. Everything a run needs is local: style samples from installed packages plus
procedural textures (``slimvision.data.style_images``), teacher vectors cached on disk (the
teacher runs once per sample), checkpoints every few hundred steps (a killed run resumes), and
at the end the student as safetensors + config, as ONNX (checked against torch), and a report
with the mean cosine to the teacher on held-out style images (whole files never trained on).

A vector is only as good as the painting it makes, so the loss can also be taken in output
space (issue 24, :class:`OutputSpaceDistillTask`): the error in every conditional-norm scale and
offset the frozen teacher transformer computes from the vector (``norm_param_weight``), and the
difference between the frozen transformer's paintings of a training-content crop from the
student's and from the teacher's vector (``image_weight``). Both default to 0, which is the
plain vector MSE the shipped students were trained with. The report gives, on held-out styles,
R^2, centred and plain cosine of the vectors and the output-space scores (norm-parameter error;
SSIM of the two paintings of a few held-out photos).

Example (the command that trains the shipped student; see ``slimvision train style-predictor``):
    >>> report = distill_predictor(PredictorDistillConfig(width_multiplier=0.35), "runs/p035")  # doctest: +SKIP
    >>> report["held_out"]["mean_cosine"]                                                        # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
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
#: Styles per held-out procedural family in the report (5 families: 20 styles).
FAMILY_STYLES = 4
INITS = ("pruned-teacher", "scratch")
TEACHERS = ("fp32", "int8")
#: Settings a resumed run may change (train longer, checkpoint or log at other steps, another
#: device); any other difference from the saved config refuses to resume.
#: The held-out painting evaluation's settings change no training, so they may differ too; the
#: output-space loss weights and their sub-batch change what is trained, so they may not.
RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every", "log_every", "device", "eval_contents",
                               "eval_painting_size"})


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
    #: Output-space distillation (0 for both: plain vector MSE, the shipped recipes). Weight of the
    #: error in every conditional-norm scale and offset the frozen teacher transformer computes
    #: from the student's vs the teacher's vector, |W (s - t)|^2 / tr(W^T W): on the vector MSE's
    #: scale (see ``models.style.norm_params``).
    norm_param_weight: float = 0.0
    #: Weight of the MSE between the frozen teacher transformer's paintings of a content crop from
    #: the student's and from the teacher's vector (gradients flow through the transformer).
    image_weight: float = 0.0
    #: The painting loss runs every ``image_every`` steps on the batch's first ``image_batch``
    #: styles, each painting an ``image_size`` px training-content crop, so a CPU step stays cheap.
    image_every: int = 1
    image_batch: int = 8
    image_size: int = 128
    #: Held-out report: each held-out style paints this many held-out content photos (0: no
    #: painting scores), at this size, with the teacher transformer from both vectors.
    eval_contents: int = 3
    eval_painting_size: int = 256

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "steps", "samples", "last_channels", "image_every", "image_batch")
        self.require_at_least(0, "norm_param_weight", "image_weight", "eval_contents")
        self.require_at_least(16, "image_size", "eval_painting_size")
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
    names, student_vectors, teacher_vectors = held_out_vectors(student, teacher, sources)
    return vector_scores(names, student_vectors, teacher_vectors, reference_mean)


def _centre_squares(sources: list[Any], size: int = STYLE_SIZE) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, (1, 3, size, size) float in [0, 1]) of each file's centre square (the pipeline's crop)."""
    from slimvision.data.style_images import load_rgb
    from slimvision.io.pixels import centre_square

    for source in sources:
        square = np.array(centre_square(load_rgb(source.path), size))
        yield source.name, torch.from_numpy(square).permute(2, 0, 1)[None].float() / 255.0


def held_out_vectors(student: torch.nn.Module, teacher: Any,
                     sources: list[Any]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """File names, student vectors (N, D) and teacher vectors (N, D) on each file's centre square."""
    return style_vectors(student, teacher, _centre_squares(sources))


def family_styles(per_family: int = FAMILY_STYLES) -> list[tuple[str, torch.Tensor]]:
    """(name, (1, 3, 256, 256) float) styles of the held-out procedural families
    (``data.style_families.held_out_styles``): kinds of picture no training data draws."""
    from slimvision.data.style_families import held_out_styles

    return [(f"family/{name}", torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0)
            for name, image in held_out_styles(per_family=per_family, size=STYLE_SIZE)]


def style_vectors(student: torch.nn.Module, teacher: Any,
                  styles: Iterable[tuple[str, torch.Tensor]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names, student vectors (N, D) and teacher vectors (N, D) of (name, (1, 3, H, W)) styles."""
    names, predicted, targets = [], [], []
    student.eval()
    device = next(student.parameters()).device
    with torch.no_grad():
        for name, pixels in styles:
            targets.append(teacher(pixels.numpy()).reshape(-1))
            predicted.append(student(pixels.to(device)).cpu().numpy().reshape(-1))
            names.append(name)
    if not names:
        return [], np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return names, np.stack(predicted), np.stack(targets)


def vector_scores(names: list[str], student_vectors: np.ndarray, teacher_vectors: np.ndarray,
                  reference_mean: np.ndarray | None = None) -> dict[str, Any]:
    """The vector report of :func:`evaluate_predictor` from vectors already computed."""
    if not names:
        return {"images": 0, "mean_cosine": None, "min_cosine": None, "per_image": {}}
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


@torch.no_grad()
def evaluate_output_space(names: list[str], student_vectors: np.ndarray, teacher_vectors: np.ndarray,
                          transformer: torch.nn.Module, contents: list[tuple[str, torch.Tensor]],
                          reference_mean: np.ndarray | None = None) -> dict[str, Any]:
    """What the vectors' difference does to the teacher transformer, on held-out styles.

    * Norm parameters: the error in every conditional-norm scale and offset, as the loss
      measures it (|W (s - t)|^2 / tr(W^T W), averaged), and as R^2 against the parameters of
      the mean vector (1 - sum |W (s - t)|^2 / sum |W (t - mean)|^2).
    * Paintings: each style paints each of ``contents`` ((name, (1, 3, H, W) tensor in [0, 1])),
      from the student's vector and from the teacher's; SSIM between the two paintings (a
      content that is the style's own file is skipped). The worst pair is named.
    """
    from slimvision.metrics import ssim
    from slimvision.models.style.norm_params import NormParameterMap

    if not names:
        return {"styles": 0}
    params = NormParameterMap(transformer)
    student_t, teacher_t = torch.from_numpy(student_vectors).float(), torch.from_numpy(teacher_vectors).float()
    report: dict[str, Any] = {"styles": len(names),
                              "norm_param_error": float(params.normalised_error(student_t, teacher_t))}
    if reference_mean is not None:
        spread = params.difference(teacher_t, torch.from_numpy(np.asarray(reference_mean)).float()[None])
        report["norm_param_r2"] = float(1 - (params.difference(student_t, teacher_t) ** 2).sum()
                                        / (spread ** 2).sum())
    per_pair: dict[str, float] = {}
    for style_name, mine, theirs in zip(names, student_t, teacher_t):
        for content_name, pixels in contents:
            if content_name == style_name:
                continue
            painted = transformer(pixels.expand(2, -1, -1, -1), torch.stack([mine, theirs]))  # (2, 3, H, W)
            images = painted.permute(0, 2, 3, 1).numpy()
            per_pair[f"{content_name} / {style_name}"] = ssim(images[1], images[0])
    if per_pair:
        worst = min(per_pair, key=per_pair.__getitem__)
        report.update({"paintings": len(per_pair), "painting_ssim_mean": float(np.mean(list(per_pair.values()))),
                       "painting_ssim_min": per_pair[worst], "worst_pair": worst, "per_pair": per_pair})
    return report


def held_out_contents(sources: list[Any], count: int, size: int) -> list[tuple[str, torch.Tensor]]:
    """``count`` held-out files spread evenly over the list, as (name, (1, 3, size, size) float)
    centre squares: photos neither the student nor the painting loss ever sees."""
    if count == 0 or not sources:
        return []
    picks = sorted({round(i * (len(sources) - 1) / max(count - 1, 1)) for i in range(min(count, len(sources)))})
    return list(_centre_squares([sources[i] for i in picks], size))


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def cached_mean(cache_folder: Path) -> np.ndarray | None:
    """Mean of the teacher vectors cached during training (the "predict the average" baseline)."""
    vectors = [np.load(path).reshape(-1) for path in sorted(cache_folder.glob("*.npy"))]
    return np.mean(vectors, axis=0) if vectors else None


#: Training content crops the painting loss draws from (rendered once per run, ``image_size`` px).
CONTENT_CROPS = 256


class OutputSpaceDistillTask:
    """Vector MSE to the teacher's style vector, plus two output-space terms (config weights):

    * ``norm_param_weight`` x the error in every conditional-norm scale and offset the frozen
      teacher transformer computes from the student's vs the teacher's vector
      (:meth:`NormParameterMap.normalised_error`, on the vector MSE's scale);
    * ``image_weight`` x MSE between the frozen transformer's paintings of a training-content
      crop from the student's and from the teacher's vector, every ``image_every`` steps on the
      batch's first ``image_batch`` styles; the gradient flows through the frozen transformer
      into the student's vector.

    With both weights 0 the loss is exactly :class:`~slimvision.compress.distill.VectorDistillTask`'s
    and the transformer is never built.

    Args:
        student: the predictor being trained (the only module the trainer steps and saves).
        teacher: the teacher predictor (numpy in, vectors out), its outputs cached in ``cache``.
        transformer: the frozen teacher transformer (None when both weights are 0).
        contents: (N, 3, S, S) float content crops in [0, 1] for the painting loss.
        start_step: the step a resumed run starts from (the painting schedule and its content
            choice are functions of the absolute step).
    """

    def __init__(self, student: torch.nn.Module, teacher: Any, cache: Any, config: PredictorDistillConfig,
                 transformer: torch.nn.Module | None = None, contents: torch.Tensor | None = None,
                 start_step: int = 0) -> None:
        from slimvision.models.style.norm_params import NormParameterMap

        self.model = student
        self.teacher = teacher
        self.cache = cache
        self.config = config
        if (config.norm_param_weight > 0 or config.image_weight > 0) and transformer is None:
            raise ConfigError("the output-space losses need the teacher transformer")
        if config.image_weight > 0 and contents is None:
            raise ConfigError("the painting loss needs content crops")
        self.transformer = transformer
        if transformer is not None:
            transformer.eval().requires_grad_(False)  # frozen: gradients pass through to the vector only
        self.params = (NormParameterMap(transformer).to(next(student.parameters()).device)
                       if transformer is not None and config.norm_param_weight > 0 else None)
        self.contents = contents
        self.step = start_step
        # The painting loss is computed every `image_every` steps; the log shows the latest value
        # on every step, so each log entry averages the same number of values for every key.
        self.last_image_loss = torch.tensor(0.0)

    def __call__(self, batch: dict[str, Any], phase: str = "main") -> dict[str, torch.Tensor]:
        from slimvision.compress.distill import _teacher_targets  # the vector task's own target lookup

        target = _teacher_targets(batch, self.teacher, self.cache, ())
        predicted = self.model(batch["inputs"]).reshape(target.shape)
        mse = torch.nn.functional.mse_loss(predicted, target)
        cosine = torch.nn.functional.cosine_similarity(predicted.flatten(1), target.flatten(1)).mean()
        out = {"loss": mse, "mse": mse.detach(), "cosine": cosine.detach()}
        loss = mse
        if self.params is not None:
            norm_error = self.params.normalised_error(predicted.flatten(1), target.flatten(1))
            loss = loss + self.config.norm_param_weight * norm_error
            out["norm_param_loss"] = norm_error.detach()
        if self.config.image_weight > 0:
            if self.step % self.config.image_every == 0:
                image_loss = self.painting_loss(predicted.flatten(1), target.flatten(1))
                loss = loss + self.config.image_weight * image_loss
                self.last_image_loss = image_loss.detach()
            out["image_loss"] = self.last_image_loss
        self.step += 1
        out["loss"] = loss
        return out

    def painting_loss(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """MSE between the transformer's paintings from the first ``image_batch`` predicted and
        target vectors, each painting a content crop picked by (seed, step)."""
        assert self.transformer is not None and self.contents is not None
        count = min(self.config.image_batch, len(predicted))
        picks = np.random.default_rng([self.config.seed, self.step]).integers(len(self.contents), size=count)
        content = self.contents[torch.from_numpy(picks)].to(predicted.device)  # (n, 3, S, S)
        with torch.no_grad():
            reference = self.transformer(content, target[:count])
        return torch.nn.functional.mse_loss(self.transformer(content, predicted[:count]), reference)


def content_crops(sources: list[Any], config: PredictorDistillConfig, count: int = CONTENT_CROPS) -> torch.Tensor:
    """(count, 3, S, S) float crops in [0, 1] of training files (never held-out ones), for the
    painting loss: photos cropped and colour-jittered, no textures or mixes (contents, not styles)."""
    from slimvision.data.style_images import StyleImageDataset

    crops = StyleImageDataset(sources, count, seed=config.seed + 104_729, size=config.image_size,
                              texture_fraction=0.0, mix_fraction=0.0)
    pixels = np.stack([crops[i][1] for i in range(count)])  # (N, S, S, 3) uint8
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0)


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
    from slimvision.compress.distill import OnnxTeacher, TeacherCache
    from slimvision.compress.fold import fold_batch_norms
    from slimvision.data.style_images import StyleImageDataset, find_style_sources, split_sources
    from slimvision.graph.precision import with_float_weights
    from slimvision.io.atomic import write_text_atomic
    from slimvision.models.style import StylePredictor
    from slimvision.models.style.port import port_transformer
    from slimvision.models.weights import save_model
    from slimvision.training.checkpoint import CheckpointStore
    from slimvision.training.trainer import CosineDecay, Trainer, TrainerConfig, check_same_config

    run_dir = Path(run_dir)
    store = CheckpointStore(run_dir / "checkpoints")
    check_same_config(store, config, RESUMABLE_CHANGES)  # before any setup (a run saved before a field existed resumes)
    output_space = config.norm_param_weight > 0 or config.image_weight > 0
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
    transformer = port_transformer().to(config.device) if output_space else None
    contents = content_crops(train_sources, config) if config.image_weight > 0 else None
    task = OutputSpaceDistillTask(student, teacher, TeacherCache(run_dir / "teacher-cache", teacher.fingerprint),
                                  config, transformer, contents)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    trainer = Trainer(task, {"main": optimizer},
                      TrainerConfig(steps=config.steps, log_every=config.log_every,
                                    checkpoint_every=config.checkpoint_every, progress=progress),
                      run_dir=run_dir / "checkpoints", extra={"config": config.to_dict()})
    start = trainer.resume()
    task.step = start
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
    names, student_vectors, teacher_vectors = held_out_vectors(student, teacher, held_out)
    evaluator = (transformer or port_transformer()).cpu()
    painted_contents = held_out_contents(held_out, config.eval_contents, config.eval_painting_size)
    report = {"config": config.to_dict(), "steps_done": trainer.step, "resumed_from": start,
              "params": sum(p.numel() for p in student.parameters()),
              "onnx_bytes": exported.onnx_path.stat().st_size,
              "export_max_abs_diff": exported.max_abs_diff,
              "train_log": {"steps": trainer.log.steps, **trainer.log.values},  # the whole run's
              "held_out": vector_scores(names, student_vectors, teacher_vectors, mean),
              # What the vector error does to the teacher transformer's norms and paintings.
              "held_out_output_space": evaluate_output_space(
                  names, student_vectors, teacher_vectors, evaluator, painted_contents, mean),
              # Kinds of picture no training data draws (whichever `style_data`), same scores.
              "held_out_families": family_scores(student, teacher, evaluator, painted_contents, mean),
              "norm_parameters": _norm_parameter_facts(evaluator),
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
    _log_scores(report)
    return report


def family_scores(student: torch.nn.Module, teacher: Any, transformer: torch.nn.Module,
                   contents: list[tuple[str, torch.Tensor]], mean: np.ndarray | None) -> dict[str, Any]:
    """Vector and output-space scores on the held-out procedural families' styles."""
    names, student_vectors, teacher_vectors = style_vectors(student, teacher, family_styles())
    return {"vectors": vector_scores(names, student_vectors, teacher_vectors, mean),
            "output_space": evaluate_output_space(names, student_vectors, teacher_vectors, transformer, contents,
                                                  mean)}


def _norm_parameter_facts(transformer: torch.nn.Module) -> dict[str, Any]:
    """The claim the norm-parameter loss rests on, measured: the map from vector to norm
    parameters is affine (largest deviation of the transformer's own layers from ``W v + b`` on
    random vectors), and how unequally it weights the vector's directions."""
    from slimvision.models.style.norm_params import NormParameterMap

    params = NormParameterMap(transformer)
    weights = params.direction_weights()
    probe = torch.randn(8, params.matrix.shape[1], generator=torch.Generator().manual_seed(0)) * 3
    return {"parameters": int(params.matrix.shape[0]), "affine_max_abs_diff": params.check_affine(transformer, probe),
            "direction_weight_largest": float(weights[0]), "direction_weight_smallest": float(weights[-1]),
            "directions_weighted_above_1": int((weights > 1).sum())}


def _log_scores(report: dict[str, Any]) -> None:
    held, output = report["held_out"], report["held_out_output_space"]
    families = report["held_out_families"]
    log.info("held-out families: R^2 %s, centred cosine %s; painting SSIM %s (worst %s)",
             _number(families["vectors"].get("r2")), _number(families["vectors"].get("centred_cosine")),
             _number(families["output_space"].get("painting_ssim_mean")),
             _number(families["output_space"].get("painting_ssim_min")))
    log.info("student: %d params; held-out: R^2 %s, centred cosine %s, cosine %s; norm-parameter error %s; "
             "painting SSIM vs the teacher's painting %s (worst %s)", report["params"], _number(held.get("r2")),
             _number(held.get("centred_cosine")), _number(held.get("mean_cosine")),
             _number(output.get("norm_param_error")), _number(output.get("painting_ssim_mean")),
             _number(output.get("painting_ssim_min")))


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


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
