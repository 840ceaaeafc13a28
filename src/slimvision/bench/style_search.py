"""The latency-budgeted search (:mod:`slimvision.bench.search`) for the two style students.

Candidates are knob sets of the distillation configs the recipes train
(:class:`~slimvision.training.style_predictor.PredictorDistillConfig`,
:class:`~slimvision.training.style_transformer.TransformerDistillConfig`), so a candidate that
wins is trained for real with the same knobs (``slimvision train style-predictor ...``):

* **predictor**: ``width_multiplier``, ``last_channels``, ``stem_stride`` (2: MobileNetV2's 3x3
  stem; 4: a 4x4 "patchify" stem that skips half resolution) and ``stage_repeats`` (blocks kept
  in each of MobileNetV2's seven stages). Timed as it ships (NHWC, 256 px, the teacher's size)
  next to the teacher predictor as shipped (int8, the faster teacher predictor graph here). It
  runs once per style, so its budget can be generous: up to the teacher's own time.
* **transformer**: ``space_to_depth`` (2: every conv on phase planes at half resolution or
  below, as shipped), ``separable`` parts, ``edge_kernels``, ``residual_blocks``,
  ``residual_width`` (other than 32 needs ``init: "scratch"``), ``padding``, ``init``. Timed at
  each size asked (512 px and 1280x720 by default; the budget applies to the first) next to the
  float teacher transform, the fastest teacher graph here.

Each front runner is trained by the recipe itself (``distill_predictor`` / ``distill_transformer``
for ``train_steps`` steps, the run in the candidate's folder, resumable) and scored by the
recipe's held-out report: the predictor by vector R² against the float teacher (the centred
cosine and the mean cosine kept beside it), the transformer by mean SSIM of its output against
the float teacher's on held-out (content, style) pairs.

Example:
    >>> candidates = predictor_candidates(default_predictor_family())        # doctest: +SKIP
    >>> result = search(candidates, predictor_reference(), SearchSettings(budget_ms=30),
    ...                 train=predictor_trainer(), score=score_predictor, folder="runs/search")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slimvision.bench.search import Candidate, Fidelity, Reference
from slimvision.errors import ConfigError, InputError

STUDENTS = ("predictor", "transformer")
PREDICTOR_SIZE = 256  # the teacher predictor's fixed input side
STYLE_DIM = 100
#: The architecture knobs each student's candidates may set (training settings are not knobs).
PREDICTOR_KNOBS = ("width_multiplier", "last_channels", "stem_stride", "stage_repeats")
TRANSFORMER_KNOBS = ("space_to_depth", "separable", "edge_kernels", "residual_blocks", "residual_width", "padding",
                     "init")
FULL_DEPTH = (1, 2, 3, 4, 3, 3, 1)  # MobileNetV2's blocks per stage
SHIPPED_DEPTH = (1, 1, 2, 2, 2, 2, 1)  # the shipped student's 11 blocks
DEFAULT_TRANSFORMER_SIZES = ((512, 512), (720, 1280))  # (height, width)


# ---------------------------------------------------------------------------------------------
# Candidate families
# ---------------------------------------------------------------------------------------------

def default_predictor_family() -> list[dict[str, Any]]:
    """32 knob sets: width 0.35-1.0 x last layer 512/1280 x stem stride 2/4 x 17 or 11 blocks."""
    family = []
    for width in (0.35, 0.5, 0.75, 1.0):
        for last in (512, 1280):
            for stem in (2, 4):
                for depth in (FULL_DEPTH, SHIPPED_DEPTH):
                    family.append({"name": f"w{round(width * 100):03d}-l{last}-s{stem}-b{sum(depth)}",
                                   "width_multiplier": width, "last_channels": last, "stem_stride": stem,
                                   "stage_repeats": list(depth)})
    return family


def default_transformer_family() -> list[dict[str, Any]]:
    """9 knob sets: phase-plane students (3-5 residual blocks, full or separable residual convs, one
    at half the residual width) and two separable students in the teacher's layout."""
    family = []
    for blocks in (3, 4, 5):
        family.append({"name": f"p33-r{blocks}", "space_to_depth": 2, "separable": [], "edge_kernels": [3, 3],
                       "residual_blocks": blocks})
        family.append({"name": f"p33-r{blocks}-sepres", "space_to_depth": 2, "separable": ["residual"],
                       "edge_kernels": [3, 3], "residual_blocks": blocks})
    family.append({"name": "p33-r5-w16", "space_to_depth": 2, "separable": [], "edge_kernels": [3, 3],
                   "residual_blocks": 5, "residual_width": 16, "init": "scratch"})
    for blocks in (3, 5):
        family.append({"name": f"sep33-r{blocks}", "space_to_depth": 1,
                       "separable": ["contract", "residual", "expand"], "edge_kernels": [3, 3],
                       "residual_blocks": blocks})
    return family


def read_family(path: str | Path) -> list[dict[str, Any]]:
    """A ``--candidates`` file: a JSON list of objects, each a ``name`` and its knobs."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"is not valid JSON ({exc})") from None
    if not isinstance(data, list) or not data or not all(isinstance(item, dict) for item in data):
        raise InputError(path, 'must hold a non-empty JSON list of objects like {"name": "...", knob: value}')
    return data


def _split_name(knob_set: Mapping[str, Any], allowed: Sequence[str], student: str) -> tuple[str, dict[str, Any]]:
    knobs = dict(knob_set)
    name = knobs.pop("name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"every {student} candidate needs a \"name\", got {dict(knob_set)}")
    unknown = sorted(set(knobs) - set(allowed))
    if unknown:
        raise ConfigError(f"{student} candidate {name!r}: unknown knob(s) {', '.join(map(repr, unknown))}; "
                          f"the knobs are {', '.join(allowed)}")
    return name, knobs


def _config(config_class: type, name: str, knobs: Mapping[str, Any]) -> Any:
    """The distillation config of a knob set (its checks name the candidate)."""
    try:
        return config_class.from_dict(dict(knobs))
    except ConfigError as exc:
        raise ConfigError(f"candidate {name!r}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Predictor
# ---------------------------------------------------------------------------------------------

def _predictor_export_options() -> dict[str, Any]:
    from slimvision.export.onnx import CardInfo, ImageInput

    return {"output_names": ("style_vector",),
            "preprocessing": {"style_image": ImageInput(layout="NHWC", size=(PREDICTOR_SIZE, PREDICTOR_SIZE))},
            "card": CardInfo(system="style", task="style-prediction", layouts={"style_vector": "N,1,1,D"})}


def _style_image() -> np.ndarray:
    return np.random.default_rng(0).random((1, PREDICTOR_SIZE, PREDICTOR_SIZE, 3), dtype=np.float32)


def predictor_candidates(family: Sequence[Mapping[str, Any]]) -> list[Candidate]:
    """Predictor candidates, timed as they ship: NHWC 256 px in, (1, 1, 1, 100) out."""
    from slimvision.training.style_predictor import PredictorDistillConfig

    candidates = []
    workload = {f"{PREDICTOR_SIZE}px": {"style_image": _style_image()}}
    for knob_set in family:
        name, knobs = _split_name(knob_set, PREDICTOR_KNOBS, "predictor")
        config = _config(PredictorDistillConfig, name, knobs)
        candidates.append(Candidate(name, knobs, lambda config=config: _build_predictor(config), workload,
                                    _predictor_export_options()))
    return candidates


def _build_predictor(config: Any) -> Any:
    from slimvision.models.style import NHWCStylePredictor, StylePredictor

    return NHWCStylePredictor(StylePredictor(config.student_config()))


def predictor_reference() -> Reference:
    """The teacher predictor graph as shipped (int8): the faster teacher predictor here, and the
    one docs/compress.md's speed-ups are over. (The recipe distils its float twin.)"""
    from slimvision.assets import STYLE_TEACHER_PREDICTOR

    return Reference("teacher predictor int8", STYLE_TEACHER_PREDICTOR.path(),
                     {f"{PREDICTOR_SIZE}px": {"style_image": _style_image()}})


# ---------------------------------------------------------------------------------------------
# Transformer
# ---------------------------------------------------------------------------------------------

def size_label(size: tuple[int, int]) -> str:
    """(height, width) -> "512px" for a square, else "WIDTHxHEIGHT" (as video sizes are written)."""
    height, width = size
    return f"{width}px" if height == width else f"{width}x{height}"


def _transformer_feeds(sizes: Sequence[tuple[int, int]]) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    style = rng.normal(0.0, 0.5, (1, 1, 1, STYLE_DIM)).astype(np.float32)
    return {size_label(size): {"content_image": rng.random((1, *size, 3), dtype=np.float32), "style_vector": style}
            for size in sizes}


def transformer_candidates(family: Sequence[Mapping[str, Any]],
                           sizes: Sequence[tuple[int, int]] = DEFAULT_TRANSFORMER_SIZES) -> list[Candidate]:
    """Transformer candidates with the shipped interface (NHWC content of free size, (1, 1, 1, 100)
    style), timed at every size; each size must be a multiple of the candidate's ``size_multiple``."""
    from slimvision.export.onnx import CardInfo, ImageInput
    from slimvision.training.style_transformer import TransformerDistillConfig

    feeds = _transformer_feeds(sizes)
    candidates = []
    for knob_set in family:
        name, knobs = _split_name(knob_set, TRANSFORMER_KNOBS, "transformer")
        config = _config(TransformerDistillConfig, name, knobs)
        multiple = config.student_config().size_multiple
        if any(side % multiple for size in sizes for side in size):
            raise ConfigError(f"transformer candidate {name!r}: every size must be a multiple of {multiple} "
                              f"(its phase planes), got {[size_label(size) for size in sizes]}")
        size = {1: "height", 2: "width"}
        options = {"output_names": ("stylized_image",),
                   "dynamic_axes": {"content_image": size, "stylized_image": size},
                   "preprocessing": {"content_image": ImageInput(layout="NHWC", size_multiple=multiple)},
                   "card": CardInfo(system="style", task="style-transfer",
                                    layouts={"style_vector": "N,1,1,D", "stylized_image": "NHWC"})}
        candidates.append(Candidate(name, knobs, lambda config=config: _build_transformer(config), feeds, options))
    return candidates


def _build_transformer(config: Any) -> Any:
    from slimvision.models.style import NHWCStyleTransformer, StyleTransformer

    return NHWCStyleTransformer(StyleTransformer(config.student_config()))


def transformer_reference(sizes: Sequence[tuple[int, int]] = DEFAULT_TRANSFORMER_SIZES) -> Reference:
    """The teacher transform with its int8 weights computed in float: the fastest teacher graph here."""
    from slimvision.assets import STYLE_TEACHER_TRANSFORM
    from slimvision.graph.precision import with_float_weights

    return Reference("teacher transform fp32", with_float_weights(STYLE_TEACHER_TRANSFORM.path()),
                     _transformer_feeds(sizes))


# ---------------------------------------------------------------------------------------------
# Training and scoring through the recipes
# ---------------------------------------------------------------------------------------------

def _schedule(steps: int) -> dict[str, int]:
    """Log about ten times and checkpoint about four times in a brief run."""
    return {"steps": steps, "log_every": max(1, steps // 10), "checkpoint_every": max(1, steps // 4)}


def predictor_trainer(batch_size: int = 24, learning_rate: float = 1e-3, progress: bool = True,
                      samples: int | None = None) -> Callable[[Candidate, int, Path], dict[str, Any]]:
    """A ``train`` callback: ``distill_predictor`` on the candidate's knobs for the given steps
    (the shipped recipe's batch and learning rate; one fresh sample per image trained on unless
    ``samples`` is given). Returns the recipe's report."""

    def train(candidate: Candidate, steps: int, folder: Path) -> dict[str, Any]:
        from slimvision.export.style import export_predictor
        from slimvision.training.style_predictor import PredictorDistillConfig, distill_predictor

        config = PredictorDistillConfig.from_dict({**candidate.knobs, **_schedule(steps), "batch_size": batch_size,
                                                   "learning_rate": learning_rate,
                                                   "samples": samples or max(steps * batch_size, 8)})
        return distill_predictor(config, folder, progress=progress, export=export_predictor)

    return train


def score_predictor(candidate: Candidate, report: Mapping[str, Any], folder: Path) -> Fidelity:
    """Held-out vector R² against the float teacher (from the recipe's report)."""
    held_out = report["held_out"]
    if held_out.get("r2") is None:
        raise ConfigError(f"{candidate.name}: the predictor report has no held-out R² (no held-out images?)")
    return Fidelity(float(held_out["r2"]), {
        "metric": "held-out style-vector R² vs the float teacher",
        "images": held_out["images"], "centred_cosine": held_out.get("centred_cosine"),
        "mean_cosine": held_out["mean_cosine"], "min_cosine": held_out["min_cosine"],
        "pipeline_model_r2": report["pipeline_model"]["held_out"].get("r2"), "params": report["params"],
        "pipeline_model_bytes": report["pipeline_model"]["bytes"]})


def transformer_trainer(batch_size: int = 8, learning_rate: float = 2e-3, progress: bool = True,
                        samples: int | None = None,
                        style_bank: int = 128) -> Callable[[Candidate, int, Path], dict[str, Any]]:
    """A ``train`` callback: ``distill_transformer`` on the candidate's knobs for the given steps
    (a smaller style bank than the recipe's 512: a brief run sees few of them). Returns its report."""

    def train(candidate: Candidate, steps: int, folder: Path) -> dict[str, Any]:
        from slimvision.export.style import export_transformer
        from slimvision.training.style_transformer import TransformerDistillConfig, distill_transformer

        config = TransformerDistillConfig.from_dict({**candidate.knobs, **_schedule(steps), "batch_size": batch_size,
                                                     "learning_rate": learning_rate, "style_bank": style_bank,
                                                     "samples": samples or max(steps * batch_size, 8)})
        return distill_transformer(config, folder, progress=progress, export=export_transformer)

    return train


def score_transformer(candidate: Candidate, report: Mapping[str, Any], folder: Path) -> Fidelity:
    """Held-out mean SSIM of the student's output against the float teacher's (from the recipe's report)."""
    held_out = report["held_out"]
    torch_scores = held_out["torch"]["vs_fp32_teacher"]
    shipped = held_out.get("fp16_weights", {}).get("vs_fp32_teacher", {})
    return Fidelity(float(torch_scores["ssim_mean"]), {
        "metric": "held-out SSIM vs the float teacher's output", "pairs": held_out["pairs"],
        "ssim_min": torch_scores["ssim_min"], "psnr_mean": torch_scores["psnr_mean"],
        "fp16_weights_ssim_mean": shipped.get("ssim_mean"), "params": report["params"]})


def style_search_parts(student: str, family: Sequence[Mapping[str, Any]] | None = None, *,
                       sizes: Sequence[tuple[int, int]] | None = None, batch_size: int | None = None,
                       progress: bool = True) -> tuple[list[Candidate], Reference, Any, Any]:
    """(candidates, reference, train, score) for ``student`` ("predictor" or "transformer"); the
    default family when ``family`` is None. ``sizes`` (transformer only): (height, width) pairs."""
    if student == "predictor":
        if sizes is not None:
            raise ConfigError("the predictor is timed at its input size (256 px); sizes are for the transformer")
        trainer = predictor_trainer(progress=progress, **({"batch_size": batch_size} if batch_size else {}))
        return (predictor_candidates(default_predictor_family() if family is None else family),
                predictor_reference(), trainer, score_predictor)
    if student == "transformer":
        sizes = tuple(sizes or DEFAULT_TRANSFORMER_SIZES)
        trainer = transformer_trainer(progress=progress, **({"batch_size": batch_size} if batch_size else {}))
        return (transformer_candidates(default_transformer_family() if family is None else family, sizes),
                transformer_reference(sizes), trainer, score_transformer)
    raise ConfigError(f"student must be one of {', '.join(STUDENTS)}, got {student!r}")
