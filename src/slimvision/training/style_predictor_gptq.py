"""The teacher style predictor at 4 bits per weight, by GPTQ: no training, two minutes on a CPU.

Issue 24 found the distilled predictor students to be the fast bundle's weak link on styles
nobody tuned them to (held-out families R² 0.52 for the shipped student). The predictor runs
once per style, so its speed barely matters; its size does (the web page downloads it). This
job keeps the teacher's own network and shrinks its weights instead: every 1x1 conv and the
head go to 4-bit codes with :mod:`slimvision.compress.gptq`, calibrated on images of the
*training* style families and training real images only. Then the 4-bit scales and the biases
are fine-tuned for ``tune_steps`` steps (codes fixed; :func:`slimvision.compress.gptq.tune_scales`)
on more training-family images, against the float teacher, by the error in the teacher
transformer's conditional-norm parameters (the output-space loss of the distillation: it weights
each vector direction by how much it moves the painting). :func:`quantize_predictor` scores the
result against the float teacher on the held-out families and the held-out real
files, the same scores a distilled student's report has, and writes the pipeline's graph
through the ``export`` step it is handed (:func:`slimvision.export.style.export_predictor_int4`).

Example:
    >>> config = PredictorGPTQConfig()
    >>> report = quantize_predictor(config, "runs/pred-gptq4", export=export_predictor_int4)  # doctest: +SKIP
    >>> report["held_out_families"]["vectors"]["r2"]                                           # doctest: +SKIP
    0.98
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimvision.compress.gptq import GRIDS
from slimvision.config import BaseConfig
from slimvision.errors import ConfigError

#: What the export step returns: the pipeline's graph (4-bit weights) and the float graph it was checked against.
PredictorInt4Exporter = Callable[[torch.nn.Module, Sequence[Any], Path, str], dict[str, Path]]


@dataclass
class PredictorGPTQConfig(BaseConfig):
    """How the teacher predictor is quantized and scored.

    Attributes:
        bits: code width; 4 is what ONNX stores packed (two codes per byte).
        group_size: input channels per scale and zero point (64: 0.31 extra bits per weight).
        act_order: quantize the inputs with the most energy first (R² 0.93 -> 0.97 on the
            held-out families, docs/compress.md).
        damping: GPTQ's diagonal damping, as a fraction of the mean input energy.
        calibration: training-family / training-file images the layers are calibrated on.
        calibration_seed: which images (``data.style_families.family_training_data``'s seed).
        batch_size: calibration images per forward pass (memory only; results do not change).
        held_out_fraction: share of real style files held out besides the held-out origins,
            as the distillation's ``held_out_fraction`` (the report scores them).
        eval_contents: held-out photos the output-space report paints each held-out style on.
        eval_painting_size: their side in pixels.
        tune_steps: Adam steps fine-tuning the scales and biases after GPTQ (0: GPTQ alone).
        tune_batch_size: training-family images per step.
        tune_learning_rate: Adam's step size.
        tune_seed: which images (another draw of the training families than the calibration's).
        wide_budget_kb: extra kilobytes (1000 bytes) the graph may grow by to store some layers at
            8 bits instead of 4; which layers is measured (:func:`wide_layers`), 0 for none.
        sensitivity_images: calibration images the per-layer measurement runs on.
        grid: each group's scale and zero point: "minmax" (its range) or "mse" (the range
            clipped where that rounds with less error; ``compress.gptq.GPTQSettings.grid``).
    """

    bits: int = 4
    group_size: int = 64
    act_order: bool = True
    damping: float = 0.01
    calibration: int = 128
    calibration_seed: int = 7
    batch_size: int = 32
    held_out_fraction: float = 0.15
    eval_contents: int = 3
    eval_painting_size: int = 192
    tune_steps: int = 200
    tune_batch_size: int = 16
    tune_learning_rate: float = 1e-4
    tune_seed: int = 11
    wide_budget_kb: int = 0
    sensitivity_images: int = 64
    grid: str = "minmax"

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        if self.bits != 4:
            raise ConfigError(f"{name}: bits must be 4 (the stored graph packs two 4-bit codes per byte), "
                              f"got {self.bits}")
        if min(self.group_size, self.calibration, self.batch_size, self.eval_painting_size) < 1:
            raise ConfigError(f"{name}: group_size, calibration, batch_size and eval_painting_size must be >= 1")
        if self.eval_contents < 0 or self.tune_steps < 0 or self.wide_budget_kb < 0:
            raise ConfigError(f"{name}: eval_contents, tune_steps and wide_budget_kb must be >= 0")
        if self.sensitivity_images < 1:
            raise ConfigError(f"{name}: sensitivity_images must be >= 1, got {self.sensitivity_images}")
        if self.tune_batch_size < 1 or not self.tune_learning_rate > 0:
            raise ConfigError(f"{name}: tune_batch_size must be >= 1 and tune_learning_rate > 0")
        if not 0.0 <= self.held_out_fraction < 1.0:
            raise ConfigError(f"{name}: held_out_fraction must be in [0, 1), got {self.held_out_fraction}")
        if not 0.0 < self.damping < 1.0:
            raise ConfigError(f"{name}: damping must be in (0, 1), got {self.damping}")
        self.require_one_of("grid", GRIDS)


def calibration_batches(config: PredictorGPTQConfig) -> tuple[list[torch.Tensor], list[Any]]:
    """(batches of (B, 3, 256, 256) training styles in [0, 1], the held-out real files).

    The images come from the training families and training files only, drawn as the
    distillation's family data draws them, so nothing the report scores was calibrated on.
    """
    from slimvision.data.style_families import family_training_data
    from slimvision.training.style_predictor import STYLE_SIZE

    dataset, held_out = family_training_data(config.calibration, seed=config.calibration_seed, size=STYLE_SIZE,
                                             held_out_fraction=config.held_out_fraction)
    images = np.stack([dataset[index][1] for index in range(config.calibration)])
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    return list(pixels.split(config.batch_size)), held_out


@torch.no_grad()
def _round_others_to_float16(model: torch.nn.Module, quantized: set[str]) -> None:
    """Round the weights GPTQ left alone (stem, depthwise convs) to float16, as the graph stores
    them, so the torch model scored here computes what the shipped graph computes."""
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and name not in quantized:
            module.weight.copy_(module.weight.half().float())


def tuning_batches(config: PredictorGPTQConfig) -> Iterator[torch.Tensor]:
    """``tune_steps`` batches of (B, 3, 256, 256) training-family styles in [0, 1], drawn lazily."""
    from slimvision.data.style_families import family_training_data
    from slimvision.training.style_predictor import STYLE_SIZE

    size = config.tune_batch_size
    dataset, _ = family_training_data(config.tune_steps * size, seed=config.tune_seed, size=STYLE_SIZE,
                                      held_out_fraction=config.held_out_fraction)
    for step in range(config.tune_steps):
        images = np.stack([dataset[step * size + index][1] for index in range(size)])
        yield torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def remake_command(config: PredictorGPTQConfig, run_dir: str | Path) -> str:
    """The ``slimvision compress gptq`` command line that remakes this run (its card's remake)."""
    default = PredictorGPTQConfig()
    fields = {"--group-size": "group_size", "--calibration": "calibration", "--seed": "calibration_seed",
              "--tune-steps": "tune_steps", "--wide-budget-kb": "wide_budget_kb", "--grid": "grid"}
    words = [f"{flag} {getattr(config, field)}" for flag, field in fields.items()
             if getattr(config, field) != getattr(default, field)]
    if not config.act_order:
        words.append("--no-act-order")
    return " ".join([f"slimvision compress gptq --run-dir {run_dir}", *words])


def wide_layers(model: torch.nn.Module, batches: Sequence[torch.Tensor], config: PredictorGPTQConfig,
                transformer: torch.nn.Module) -> dict[str, Any]:
    """Which layers to store at 8 bits within ``wide_budget_kb``, by measurement.

    Each quantizable layer alone is rounded to 4 bits on ``sensitivity_images`` calibration
    images (:func:`~slimvision.compress.gptq.layer_sensitivity`), scored by the same
    norm-parameter error the scale tune minimises; the budget goes to the most sensitivity per
    extra byte (:func:`~slimvision.compress.gptq.choose_wide_layers`).
    """
    from slimvision.compress.gptq import choose_wide_layers, extra_bytes, layer_sensitivity, quantizable_layers
    from slimvision.models.style.norm_params import NormParameterMap

    norms = NormParameterMap(transformer.requires_grad_(False))
    subset = list(torch.cat(list(batches))[:config.sensitivity_images].split(config.batch_size))
    with torch.no_grad():  # the float model's own outputs are the reference
        lookup = {id(batch): model(batch) for batch in subset}

    def loss(student: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return norms.normalised_error(student(batch), lookup[id(batch)])

    sensitivity = layer_sensitivity(model, subset, loss, config.bits, config.group_size)
    shapes = {name: tuple(module.weight.shape) for name, module in quantizable_layers(model)}
    costs = {name: extra_bytes(shape, config.group_size, config.bits, 8) for name, shape in shapes.items()}
    chosen = choose_wide_layers(sensitivity, costs, config.wide_budget_kb * 1000)
    return {"budget_bytes": config.wide_budget_kb * 1000, "layers": chosen,
            "extra_bytes": int(sum(costs[name] for name in chosen)),
            "sensitivity": {name: float(value) for name, value in sensitivity.items()}}


def _tune(model: torch.nn.Module, layers: list[Any], config: PredictorGPTQConfig, transformer: torch.nn.Module,
          progress: bool) -> dict[str, Any]:
    """:func:`~slimvision.compress.gptq.tune_scales` against the float teacher in norm-parameter space."""
    from slimvision.compress.gptq import tune_scales
    from slimvision.models.style.norm_params import NormParameterMap
    from slimvision.models.style.port import port_predictor
    from slimvision.progress import progress_bar

    teacher, norms = port_predictor(), NormParameterMap(transformer.requires_grad_(False))

    def loss(student: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = teacher(batch)
        return norms.normalised_error(student(batch), target)

    with progress_bar(config.tune_steps, enabled=progress, desc="tuning scales", unit="step") as bar:
        def advance(_step: int, value: float) -> None:
            bar.update()
            bar.set_postfix({"loss": f"{value:.5f}"})

        losses = tune_scales(model, layers, tuning_batches(config), loss, config.tune_learning_rate, advance)
    window = max(1, len(losses) // 10)
    return {"steps": len(losses), "loss": "norm-parameter error against the float teacher",
            "first_steps_mean": float(np.mean(losses[:window])) if losses else None,
            "last_steps_mean": float(np.mean(losses[-window:])) if losses else None}


def quantize_predictor(config: PredictorGPTQConfig, run_dir: str | Path, progress: bool = True, *,
                       export: PredictorInt4Exporter) -> dict[str, Any]:
    """Quantize the float teacher predictor into ``run_dir``: its graph (via ``export``) and ``report.json``.

    The report has the held-out files' and held-out families' vector scores (R², centred
    cosine) and, for the families, SSIM of the teacher transformer's paintings from the
    quantized vectors against those from the teacher's, plus the stored bytes.
    """
    from slimvision.assets import STYLE_TEACHER_PREDICTOR
    from slimvision.compress.distill import OnnxTeacher
    from slimvision.compress.gptq import GPTQSettings, quantize_gptq
    from slimvision.graph.precision import with_float_weights
    from slimvision.io.atomic import write_text_atomic
    from slimvision.models.style.port import port_predictor, port_transformer
    from slimvision.progress import progress_bar
    from slimvision.training.style_predictor import (
        family_scores, held_out_contents, held_out_vectors, vector_scores,
    )

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    batches, held_out = calibration_batches(config)
    model = port_predictor()
    teacher = OnnxTeacher(with_float_weights(STYLE_TEACHER_PREDICTOR.path()), layout="NHWC")
    transformer = port_transformer()
    wide = wide_layers(model, batches, config, transformer) if config.wide_budget_kb else None
    settings = GPTQSettings(bits=config.bits, group_size=config.group_size, act_order=config.act_order,
                            damping=config.damping, grid=config.grid,
                            layer_bits=tuple((name, 8) for name in (wide["layers"] if wide else ())))
    with progress_bar(0, enabled=progress, desc="GPTQ layers", unit="layer") as bar:
        def advance(done: int, total: int, name: str) -> None:
            bar.total = total
            bar.update()
            bar.set_postfix({"layer": name})

        layers = quantize_gptq(model, batches, settings, progress=advance)
    _round_others_to_float16(model, {layer.name for layer in layers})
    tuned = _tune(model, layers, config, transformer, progress) if config.tune_steps else None
    paths = export(model, layers, run_dir, remake_command(config, run_dir))
    # The reference mean for R² is the teacher's mean over the calibration images (training data).
    mean = np.concatenate([teacher(batch.numpy()).reshape(len(batch), -1)
                           for batch in batches]).mean(0)
    names, student_vectors, teacher_vectors = held_out_vectors(model, teacher, held_out)
    contents = held_out_contents(held_out, config.eval_contents, config.eval_painting_size)
    pipeline = paths["pipeline_model"]
    report = {"config": config.to_dict(), "source": STYLE_TEACHER_PREDICTOR.path().name,
              "layers_quantized": len(layers),
              "weights_quantized": int(sum(layer.codes.size for layer in layers)),
              "weights_total": int(sum(p.numel() for name, p in model.named_parameters() if name.endswith("weight"))),
              "int4_bytes": int(sum(layer.stored_bytes for layer in layers)),
              "wide_layers": wide,
              "tuning": tuned,
              "held_out": vector_scores(names, student_vectors, teacher_vectors, mean),
              "held_out_families": family_scores(model, teacher, transformer, contents, mean),
              "pipeline_model": {"path": pipeline.name, "bytes": pipeline.stat().st_size,
                                 "teacher_bytes": STYLE_TEACHER_PREDICTOR.path().stat().st_size}}
    write_text_atomic(run_dir / "report.json", json.dumps(report, indent=2) + "\n", overwrite=True)
    return report
