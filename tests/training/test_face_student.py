"""The face student end to end on a tiny run: synthetic faces, pruned warm start, export the pipeline reads, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("face_recognition_models", reason="needs the faces extra: pip install '.[faces]'")
pytest.importorskip("gan_face_generate", reason="the train extra installs gan-face-generate")

from slimvision.errors import ConfigError  # noqa: E402
from slimvision.training.face_student import (  # noqa: E402
    DescriptorRegressionTask, FaceStudentConfig, train_face_student,
)


def _canvas_maker():
    from slimvision.data.face_identities import FaceCanvasMaker
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.face_detect import FaceDetector

    detector = FaceDetector(SessionSettings(threads=2), min_face_size=40)

    def landmarks(image):
        faces = detector.detect(image)
        return faces[0].landmarks if faces else None

    return FaceCanvasMaker(landmarks)


def test_a_tiny_run_exports_an_embedder_the_pipeline_loads_and_resumes(tmp_path):
    from slimvision.export.faces import export_face_student
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.faces import FaceRecognizer

    config = FaceStudentConfig(faces=6, samples_per_face=2, steps=3, batch_size=4, checkpoint_every=3, log_every=1)
    report = train_face_student(config, tmp_path / "run", canvas_maker=_canvas_maker(), export=export_face_student,
                                progress=False)
    assert report["steps_done"] == 3 and report["faces_aligned"] >= 4
    assert report["pictures"] == 2 * report["faces_aligned"]
    assert report["params"] < report["teacher_params"] / 3
    run = tmp_path / "run"
    assert json.loads((run / "report.json").read_text())["steps_done"] == 3
    targets = np.load(run / "targets.npy")
    assert targets.shape == (report["pictures"], 128) and 0.5 < np.linalg.norm(targets, axis=1).mean() < 2

    student = FaceRecognizer(SessionSettings(threads=2), model=run / "embedder.onnx", card=run / "embedder.card.json")
    assert student.embedder.name == "run-embedder" and student.embedder.dim == 128 and student.threshold == 0.6
    chips = np.zeros((1, 150, 150, 3), np.uint8)
    (descriptor,) = student.network.run({student.card.input.name: student.card.to_input(chips)})
    assert descriptor.shape == (1, 128)

    longer = FaceStudentConfig(faces=6, samples_per_face=2, steps=5, batch_size=4, checkpoint_every=5, log_every=1)
    again = train_face_student(longer, run, canvas_maker=lambda image: pytest.fail("canvases are cached"),
                               export=export_face_student, progress=False)
    assert again["resumed_from"] == 3 and again["steps_done"] == 5
    with pytest.raises(ConfigError, match="width"):
        train_face_student(FaceStudentConfig(faces=6, samples_per_face=2, steps=6, width=0.25), run,
                           canvas_maker=_canvas_maker(), export=export_face_student, progress=False)


def test_the_regression_loss_is_zero_only_at_the_teachers_descriptor():
    student = torch.nn.Identity()
    task = DescriptorRegressionTask(student, mse_weight=1.0, cosine_weight=1.0)
    target = torch.randn(4, 128)
    assert float(task({"chips": target.clone(), "targets": target}, "main")["loss"]) < 1e-6
    out = task({"chips": target * 1.5, "targets": target}, "main")  # same direction, longer: only the MSE sees it
    assert float(out["cosine"]) == pytest.approx(1.0) and float(out["loss"]) > 0.1


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="width"):
        FaceStudentConfig(width=1.5).validate()
    with pytest.raises(ConfigError, match="both be 0"):
        FaceStudentConfig(mse_weight=0, cosine_weight=0).validate()
    with pytest.raises(ConfigError):
        FaceStudentConfig(loss="triplet").validate()


def test_a_mobilefacenet_student_reads_arcface_chips_and_its_card_says_so(tmp_path):
    from slimvision.data.face_align import ARCFACE_CHIP
    from slimvision.export.faces import export_face_student
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.faces import FaceRecognizer

    config = FaceStudentConfig(student="mobilefacenet", init="scratch", faces=6, samples_per_face=2, steps=2,
                               batch_size=4, checkpoint_every=2, log_every=1)
    report = train_face_student(config, tmp_path / "mfn", canvas_maker=_canvas_maker(), export=export_face_student,
                                progress=False)
    assert 0.9e6 < report["params"] < 1.3e6
    student = FaceRecognizer(SessionSettings(threads=2), model=tmp_path / "mfn" / "embedder.onnx")
    assert student.card.template == "arcface" and student.template.size == 112
    assert np.allclose(student.template.pixel_points(), ARCFACE_CHIP.pixel_points())
    with pytest.raises(ConfigError, match="init='scratch'"):
        FaceStudentConfig(student="mobilefacenet").validate()
