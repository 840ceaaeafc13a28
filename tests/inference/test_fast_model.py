"""The shipped fast students: the predictor lands in the teacher's style space, the transformer
paints like the teacher's."""

from __future__ import annotations

import numpy as np
import pytest

from slimvision.assets import (FAST_STYLE_PREDICTOR, FAST_STYLE_PREDICTOR_GPTQ4, FAST_STYLE_PREDICTOR_GPTQ48,
                               FAST_STYLE_PREDICTOR_GPTQ48_T0,
                               FAST_STYLE_PREDICTOR_V1, FAST_STYLE_TRANSFORM, FAST_STYLE_TRANSFORM_P53,
                               FAST_STYLE_TRANSFORM_P53B_INT8, file_sha256, samples_dir)
from slimvision.errors import SlimvisionError
from slimvision.inference.style import StyleTransferPipeline, artifact_for


@pytest.mark.parametrize("packaged", [FAST_STYLE_PREDICTOR, FAST_STYLE_PREDICTOR_V1])
def test_the_predictor_students_ship_small_and_unchanged(packaged):
    path = packaged.path()
    assert path.stat().st_size <= 800_000  # the 0.8 MB budget
    assert file_sha256(path) == packaged.sha256


@pytest.mark.parametrize("packaged", [FAST_STYLE_TRANSFORM, FAST_STYLE_TRANSFORM_P53, FAST_STYLE_PREDICTOR_GPTQ4,
                                      FAST_STYLE_PREDICTOR_GPTQ48, FAST_STYLE_PREDICTOR_GPTQ48_T0,
                                      FAST_STYLE_TRANSFORM_P53B_INT8])
def test_the_fast_bundles_ship_unchanged(packaged):
    assert file_sha256(packaged.path()) == packaged.sha256


def test_the_fast_bundle_fits_its_budget():
    from slimvision.inference.style import style_artifact

    fast = style_artifact(artifact_for("fast"))
    assert fast.predictor.path().stat().st_size + fast.transform.path().stat().st_size <= 2_000_000  # issue 24
    v3 = style_artifact("slimvision-fast-v3")  # the distilled pair, kept loadable
    assert v3.predictor.path().stat().st_size + v3.transform.path().stat().st_size <= 1_500_000


def test_the_transformer_student_paints_like_the_teacher_whole_and_tiled():
    from slimvision.data.style_images import load_rgb
    from slimvision.metrics import ssim

    teacher = StyleTransferPipeline(artifact_for("teacher", "fp32"))
    fast = StyleTransferPipeline(artifact_for("fast", "fp32"))
    content = load_rgb(samples_dir() / "content" / "chelsea_cat.jpg")[:200, :300].astype(np.float32) / 255
    # The teacher's vector for both: this compares the transformers alone.
    vector = teacher.predict_vector(load_rgb(samples_dir() / "styles" / "starry_night.jpg"))
    expected = teacher.transform_array(content, vector)
    whole = fast.transform_array(content, vector)
    assert whole.shape == expected.shape and ssim(expected, whole) > 0.85  # both files held out of training
    tiled = StyleTransferPipeline(artifact_for("fast", "fp32"), memory_budget_mb=3.0).transform_array(content, vector)
    assert ssim(whole, tiled) > 0.97


def test_student_vectors_follow_the_teacher_on_held_out_styles():
    from slimvision.data.style_images import load_rgb

    fast = StyleTransferPipeline(artifact_for("fast", "fp32"))
    teacher = StyleTransferPipeline(artifact_for("teacher", "fp32"))
    image = load_rgb(samples_dir() / "styles" / "starry_night.jpg")  # held out of training
    a, b = fast.predict_vector(image), teacher.predict_vector(image)
    assert a.shape == (100,)
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.98  # 4-bit teacher weights: 0.998
    content = np.full((64, 64, 3), 128, np.uint8)
    out = fast(content, image)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def test_model_choice_errors_name_what_exists():
    assert artifact_for("teacher", "int8") == "magenta-arbitrary-v1-int8"
    with pytest.raises(SlimvisionError, match="no int8 variant.*teacher/fp32"):
        artifact_for("fast", "int8")


def test_no_model_named_runs_the_fast_bundle_and_int8_alone_the_teacher():
    assert artifact_for() == artifact_for(None, "fp32") == artifact_for("fast") == "slimvision-fast-v7"
    assert artifact_for(precision="int8") == "magenta-arbitrary-v1-int8"  # the only int8 graph
    assert StyleTransferPipeline().artifact.name == "slimvision-fast-v7"  # builds no session yet


def test_models_command_lists_sizes_and_provenance(capsys):
    from slimvision.cli.main import main

    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "slimvision-fast-predictor-v1" in text and "predictor-mbv2-035.fp16w.onnx" in text and "MB" in text
    assert "slimvision-fast-v2" in text and "transform-phase.fp16w.onnx" in text
    assert "slimvision-fast-v3" in text and "predictor-patch4.fp16w.onnx" in text
    assert "slimvision-fast-v5" in text and "predictor-gptq4.int4w.onnx" in text and "transform-phase53" in text
    assert "slimvision-fast-v6" in text and "predictor-gptq48.int4w.onnx" in text and "transform-phase53b.int8w" in text
    assert "slimvision-fast-v7" in text and "predictor-gptq48t0.int4w.onnx" in text
    assert artifact_for("fast", "fp32") == "slimvision-fast-v7"
