"""The shipped fast predictor student: loads from the package, lands in the teacher's style space."""

from __future__ import annotations

import numpy as np
import pytest

from slimvision.assets import FAST_STYLE_PREDICTOR, file_sha256, samples_dir
from slimvision.errors import SlimvisionError
from slimvision.inference.style import StyleTransferPipeline, artifact_for


def test_the_student_ships_small_and_unchanged():
    path = FAST_STYLE_PREDICTOR.path()
    assert path.stat().st_size <= 800_000  # the 0.8 MB budget
    assert file_sha256(path) == FAST_STYLE_PREDICTOR.sha256


def test_student_vectors_follow_the_teacher_on_held_out_styles():
    from slimvision.data.style_images import load_rgb

    fast = StyleTransferPipeline(artifact_for("fast", "fp32"))
    teacher = StyleTransferPipeline(artifact_for("teacher", "fp32"))
    image = load_rgb(samples_dir() / "styles" / "starry_night.jpg")  # held out of training
    a, b = fast.predict_vector(image), teacher.predict_vector(image)
    assert a.shape == (100,)
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.85
    content = np.full((64, 64, 3), 128, np.uint8)
    out = fast(content, image)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def test_model_choice_errors_name_what_exists():
    assert artifact_for("teacher", "int8") == "magenta-arbitrary-v1-int8"
    with pytest.raises(SlimvisionError, match="no int8 variant.*teacher/fp32"):
        artifact_for("fast", "int8")


def test_models_command_lists_sizes_and_provenance(capsys):
    from slimvision.cli.main import main

    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "slimvision-fast-predictor-v1" in text and "predictor-mbv2-035.fp16w.onnx" in text and "MB" in text
