"""A short quantization-aware fine-tune of a trained face student before int8 (issue 25, item 4).

Post-training int8 of the half-width student moved a few of its decisions (docs/faces.md, "A
student in int8"). This continues the student's own distillation for a few hundred steps with
int8 rounding simulated (:mod:`slimvision.compress.qat`): the same cached pictures and teacher
descriptors as its run, the same regression loss (its target space and relational term), the
student as it was exported (batch norms folded, distance scale applied). The fine-tuned float
student is exported to ``RUN/int8-tune/embedder.onnx`` under the float student's gallery name, and
``slimvision compress face-int8 --tune-steps`` quantizes that graph instead of the float one.

Checkpoints go to ``RUN/int8-tune/checkpoints``: an interrupted fine-tune resumes, and one with
other settings (rate, batch, range) is refused in one line; more steps may be asked for.

Example:
    >>> report = tune_for_int8("runs/face-half", FaceInt8TuneConfig(steps=300),
    ...                        canvas_maker=maker, export=export_face_student)  # doctest: +SKIP
    >>> report["graph"]                                                        # doctest: +SKIP
    'runs/face-half/int8-tune/embedder.onnx'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from slimvision.config import BaseConfig
from slimvision.errors import ConfigError, InputError

#: The sub-folder of a student's run folder that the fine-tune writes.
TUNE_FOLDER = "int8-tune"
#: Training pictures (the first of the run's fixed set) the simulated ranges are calibrated on.
CALIBRATION_PICTURES = 128


@dataclass
class FaceInt8TuneConfig(BaseConfig):
    """How long and how fast the int8 fine-tune runs.

    Attributes:
        steps: Adam steps (a few hundred: the student is trained already).
        learning_rate: peak rate, cosine-decayed; a tenth of a student's training rate, so the
            weights move by about a rounding step, not away from what the student learnt.
        batch_size: pictures per step; None: the run's own.
        reduce_range: simulate 7-bit weights, as the quantizer stores them on a CPU without VNNI;
            None: as the quantizer will decide on this CPU.
        checkpoint_every / log_every: steps between checkpoints and log entries.
        device: torch device.
    """

    steps: int = 300
    learning_rate: float = 1e-4
    batch_size: int | None = None
    reduce_range: bool | None = None
    checkpoint_every: int = 100
    log_every: int = 25
    device: str = "cpu"

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "steps", "checkpoint_every", "log_every")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1 or None, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")


def _student_run(run_dir: Path) -> Any:
    """The training config of the face student in ``run_dir``; one line if it holds none."""
    from slimvision.training.face_student import saved_config

    if not (run_dir / "student").is_dir():
        raise InputError(run_dir, "holds no trained face student (student/): the int8 fine-tune continues "
                                  "a run of slimvision train face-student")
    config = saved_config(run_dir)
    if config is None:
        raise InputError(run_dir, "has no checkpoint with the student's training settings: the int8 fine-tune "
                                  "needs the run's pictures and settings")
    return config


def tune_for_int8(run_dir: str | Path, tune: FaceInt8TuneConfig, *, canvas_maker: Any, export: Any,
                  progress: bool = True) -> dict[str, Any]:
    """Fine-tune the student of ``run_dir`` with int8 rounding simulated; export the float result.

    The run's cached canvases and teacher descriptors are reused (remade if they no longer match
    its settings, as a resumed training run would). Returns a report with the exported ``graph``.

    Raises:
        InputError: ``run_dir`` holds no trained student or its settings.
        ConfigError: a fine-tune with other settings was started in it before.
    """
    from slimvision.compress.qat import calibrate, prepare, strip, weight_levels
    from slimvision.io.atomic import write_text_atomic
    from slimvision.models.weights import load_model, save_model
    from slimvision.training.checkpoint import CheckpointStore
    from slimvision.training.face_student import (
        CANVASES_FILE, DescriptorRegressionTask, DescriptorSpace, _Batches, _cached, _chips_tensor,
        data_fingerprint, make_canvases, run_pictures, training_distance_scale,
    )
    from slimvision.training.trainer import CosineDecay, Trainer, TrainerConfig, check_same_config

    run_dir = Path(run_dir)
    config = _student_run(run_dir)
    levels = weight_levels(tune.reduce_range)
    batch_size = tune.batch_size or config.batch_size
    settings = {**tune.to_dict(), "reduce_range": levels == 64, "batch_size": batch_size}
    folder = run_dir / TUNE_FOLDER
    try:
        check_same_config(CheckpointStore(folder / "checkpoints"), FaceInt8TuneConfig.from_dict(settings),
                          ("steps", "checkpoint_every", "log_every", "device"))
    except ConfigError as error:
        raise ConfigError(f"{error} (here: delete {folder} to fine-tune afresh)") from None
    torch.set_flush_denormal(True)  # dlib's weights make denormals
    data_key = data_fingerprint(config)
    canvases = _cached(run_dir / CANVASES_FILE, data_key, lambda: make_canvases(config, canvas_maker, progress))
    kind, dataset, targets = run_pictures(config, canvases, run_dir, data_key, batch_size, _teacher, progress)
    student = load_model(run_dir / "student")
    prepare(student, levels)
    count = min(CALIBRATION_PICTURES, len(dataset))
    calibrate(student, (_chips_tensor([dataset[i][kind] for i in range(start, min(start + 32, count))])
                        for start in range(0, count, 32)))
    student.to(tune.device).train()
    space = DescriptorSpace.of(config.target_space, targets).to(tune.device)
    task = DescriptorRegressionTask(student, config.mse_weight, config.cosine_weight, space, config.relational_weight)
    optimizer = torch.optim.Adam(student.parameters(), lr=tune.learning_rate)
    trainer = Trainer(task, {"main": optimizer},
                      TrainerConfig(steps=tune.steps, log_every=tune.log_every,
                                    checkpoint_every=tune.checkpoint_every, progress=progress),
                      run_dir=folder / "checkpoints", extra={"config": settings})
    start = trainer.resume()
    batches = CosineDecay(_Batches(dataset, targets, kind, batch_size, config.seed + 1, tune.device),
                          optimizer, tune.learning_rate, start, tune.steps)
    trainer.fit(batches, resume=False)
    student.cpu().eval()
    scale = None
    if config.distance_scale:  # as training does: the regression pulls the distances back in
        scale = training_distance_scale(student, dataset, targets)
    student = strip(student)
    if scale is not None:
        with torch.no_grad():
            student.embedding.weight.mul_(scale)
    save_model(student, folder / "student", overwrite=True)
    paths = export(student, run_dir, folder)
    report = {"run": str(run_dir), "settings": settings, "steps_done": trainer.step, "resumed_from": start,
              "calibration_pictures": count, "distance_scale": scale,
              "train_log": {"steps": trainer.log.steps, **trainer.log.values},
              "graph": str(paths["embedder"])}
    write_text_atomic(folder / "report.json", json.dumps(report, indent=2) + "\n", overwrite=True)
    return report


def _teacher() -> torch.nn.Module:
    from slimvision.assets import DLIB_FACE_RESNET
    from slimvision.models.faces.dlib_port import load_dlib_resnet

    return load_dlib_resnet(DLIB_FACE_RESNET.path()).eval().requires_grad_(False)
