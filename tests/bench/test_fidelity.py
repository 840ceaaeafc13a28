"""The fidelity harness on the real style teacher at tiny sizes: the teacher against itself is
perfect, a student with a constant style vector on one family scores worse and leads the worst
list, the JSON has its documented fields, the sheet is written, bad folders give one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from slimvision.bench.fidelity import LabelledImage, evaluate, format_report
from slimvision.bench.style_fidelity import (StyleFidelity, StyleModel, folder_images, pair_cases,
                                             registered_style_model, vector_scores)
from slimvision.errors import InputError
from slimvision.metrics.perceptual import Lite0Distance
from tests.cli.helpers import exit_code, one_line_error
from tests.conftest import make_scene, make_style

TEACHER = "magenta-arbitrary-v1-fp32"


@pytest.fixture(scope="module")
def teacher() -> StyleModel:
    return registered_style_model(TEACHER, threads=1)


@pytest.fixture(scope="module")
def perceptual() -> Lite0Distance:
    from slimvision.models.layers.efficientnet_lite import EfficientNetLite0

    return Lite0Distance(EfficientNetLite0().eval(), stages=(0, 1))  # random weights: the contract, fast


def _styles() -> list[LabelledImage]:
    return [LabelledImage("warm", f"s{i}", make_style(64, 64, seed=i)) for i in range(2)] + [
        LabelledImage("cold", f"s{i}", 255 - make_style(64, 64, seed=10 + i)) for i in range(2)]


def _contents() -> list[LabelledImage]:
    return [LabelledImage("scenes", "a", make_scene(64)), LabelledImage("scenes", "b", make_scene(64)[::-1].copy())]


def test_the_teacher_against_itself_is_perfect(teacher, perceptual, tmp_path) -> None:
    styles = _styles()
    adapter = StyleFidelity(teacher, [StyleModel("same", TEACHER, TEACHER, teacher.predict, teacher.paint)],
                            styles, perceptual)
    report = evaluate(pair_cases(_contents(), styles), adapter, rank_by="ssim", worst=2, progress=False,
                      sheet=tmp_path / "sheet.png", sheet_side=48)
    summary = report["summary"]["same"]
    assert summary["worst"]["ssim"] == 1.0 and summary["worst"]["lite0_pd"] == 0.0
    assert summary["worst"]["colour_emd"] == 0.0 and summary["worst"]["vector_ccos"] == pytest.approx(1.0)
    assert summary["set"] == {"vector_r2": 1.0, "vector_ccos": 1.0}
    with Image.open(tmp_path / "sheet.png") as sheet:  # 2 rows; style | content | teacher | same
        assert sheet.size[0] == 4 * 48 and sheet.size[1] > 2 * 48


def test_a_constant_vector_on_one_family_scores_worse_and_leads_the_worst_list(teacher, perceptual) -> None:
    styles = _styles()
    constant = teacher.predict(make_scene(64))  # one fixed vector, whatever the style

    cold = {s.image.tobytes() for s in styles if s.family == "cold"}
    bad = StyleModel("bad", "constant", TEACHER, lambda im: constant if im.tobytes() in cold else teacher.predict(im),
                     teacher.paint)
    adapter = StyleFidelity(teacher, [bad], styles, perceptual)
    report = evaluate(pair_cases(_contents(), styles), adapter, rank_by="ssim", worst=2, progress=False)
    families = report["groups"]["style family"]["bad"]
    assert families["warm"]["ssim"] == 1.0 and families["cold"]["ssim"] < 0.99
    assert families["cold"]["lite0_pd"] > 0 and families["cold"]["vector_ccos"] < 0.99
    assert all(case["groups"]["style family"] == "cold" for case in report["worst"])
    assert report["summary"]["bad"]["set"]["vector_r2"] < 1.0
    text = format_report(report)
    assert "mean per style family" in text and "worst 2 cases by ssim" in text


def test_the_json_report_has_the_documented_fields(tmp_path, capsys) -> None:
    styles, contents = tmp_path / "styles", tmp_path / "contents"
    for index, family in enumerate(("dots", "waves")):
        (styles / family).mkdir(parents=True)
        Image.fromarray(make_style(64, 64, seed=index)).save(styles / family / "one.png")
    contents.mkdir()
    Image.fromarray(make_scene(64)).save(contents / "scene.png")
    code = exit_code(["bench", "fidelity", "--styles", styles, "--contents", contents, "--content-side", 48,
                      "--style-side", 64, "--json", "--sheet", tmp_path / "sheet.png", "--sheet-side", 32,
                      "--report", tmp_path / "report.json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert {"teacher", "models", "settings", "inputs", "metrics", "students", "rank_by", "cases", "summary",
            "groups", "worst", "sheet"} <= set(report)
    assert report["students"] == ["student", "student transformer", "student predictor"]
    assert report["teacher_arithmetic"] == {"predictor": "float", "transformer": "fp32"}  # the float teacher
    assert len(report["cases"]) == 2 and set(report["groups"]) == {"style family", "content source"}
    assert {"mean", "worst", "worst_case", "set"} <= set(report["summary"]["student"])
    assert set(report["summary"]["student"]["set"]) == {"vector_r2", "vector_ccos"}
    assert (tmp_path / "sheet.png").is_file() and json.loads((tmp_path / "report.json").read_text())["cases"]


def test_the_training_split_scores_training_families_and_refuses_held_out_ones(tmp_path, capsys) -> None:
    contents = tmp_path / "contents"
    contents.mkdir()
    Image.fromarray(make_scene(64)).save(contents / "scene.png")
    common = ["bench", "fidelity", "--split", "training", "--contents", contents, "--content-side", 32,
              "--style-side", 32, "--styles-per-family", 1, "--no-mixed", "--seed", 1, "--json"]
    assert exit_code([*common, "--families", "spiral,dots"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inputs"]["styles"] == ["spiral/0", "dots/0"] and report["settings"]["split"] == "training"
    assert exit_code([*common, "--families", "spiral,concentric"]) != 0
    assert "concentric held out" in one_line_error(capsys)


def test_bad_input_folders_give_one_line_errors(tmp_path, capsys) -> None:
    assert exit_code(["bench", "fidelity", "--styles", tmp_path / "missing"]) != 0
    assert "no such folder" in one_line_error(capsys)
    (tmp_path / "empty").mkdir()
    assert exit_code(["bench", "fidelity", "--contents", tmp_path / "empty"]) != 0
    assert "no image files" in one_line_error(capsys)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    with pytest.raises(InputError):
        folder_images(tmp_path / "broken", 64, "styles")
    assert exit_code(["bench", "fidelity", "--families", "nope"]) != 0
    assert "unknown style families" in one_line_error(capsys)


def test_vector_scores_of_a_constant_student_explain_nothing() -> None:
    teacher = np.random.default_rng(0).normal(size=(6, 5))
    scores = vector_scores(np.repeat(teacher.mean(axis=0, keepdims=True), 6, axis=0), teacher)
    assert scores["vector_r2"] == pytest.approx(0.0) and scores["vector_ccos"] == 0.0


def test_a_predictor_graph_scored_in_the_bundle_and_bad_ones_refused(tmp_path, capsys) -> None:
    import shutil

    from slimvision.assets import FAST_STYLE_PREDICTOR_GPTQ48, FAST_STYLE_TRANSFORM_P53B_INT8
    from slimvision.export.card import card_path

    contents = tmp_path / "contents"
    contents.mkdir()
    Image.fromarray(make_scene(64)).save(contents / "scene.png")
    common = ["bench", "fidelity", "--split", "training", "--families", "spiral,dots", "--contents", contents,
              "--content-side", 32, "--style-side", 64, "--styles-per-family", 1, "--seed", 1, "--json",
              "--student", "slimvision-fast-v6"]
    assert exit_code(common) == 0
    shipped = json.loads(capsys.readouterr().out)
    graph = tmp_path / "mine.onnx"  # v6's own predictor, given as a graph: the same scores
    shutil.copy(FAST_STYLE_PREDICTOR_GPTQ48.path(), graph)
    shutil.copy(card_path(FAST_STYLE_PREDICTOR_GPTQ48.path()), card_path(graph))
    assert exit_code([*common, "--student-predictor", graph]) == 0
    swapped = json.loads(capsys.readouterr().out)
    assert swapped["models"]["student"]["predictor"] == str(graph)
    assert swapped["models"]["student predictor"]["predictor"] == str(graph)
    for ours, theirs in zip(swapped["cases"], shipped["cases"]):
        for name in ("student", "student predictor"):
            assert ours["scores"][name]["ssim"] == pytest.approx(theirs["scores"][name]["ssim"], abs=1e-4)

    from slimvision.assets import FAST_STYLE_PREDICTOR_GPTQ4

    other = tmp_path / "other.onnx"  # v5's predictor (4 bits everywhere): other vectors, other paintings
    shutil.copy(FAST_STYLE_PREDICTOR_GPTQ4.path(), other)
    shutil.copy(card_path(FAST_STYLE_PREDICTOR_GPTQ4.path()), card_path(other))
    assert exit_code([*common, "--student-predictor", other]) == 0
    changed = json.loads(capsys.readouterr().out)
    assert any(abs(ours["scores"]["student"]["vector_ccos"] - theirs["scores"]["student"]["vector_ccos"]) > 1e-4
               for ours, theirs in zip(changed["cases"], shipped["cases"]))

    card_path(graph).unlink()
    assert exit_code([*common, "--student-predictor", graph]) != 0
    assert "has no card beside it" in one_line_error(capsys)
    transformer = tmp_path / "t.onnx"  # a graph that is no predictor
    shutil.copy(FAST_STYLE_TRANSFORM_P53B_INT8.path(), transformer)
    shutil.copy(card_path(FAST_STYLE_TRANSFORM_P53B_INT8.path()), card_path(transformer))
    assert exit_code([*common, "--student-predictor", transformer]) != 0
    assert "is not a style predictor" in one_line_error(capsys)
    assert exit_code([*common, "--student-predictor", tmp_path / "none.onnx"]) != 0
    assert "no such predictor graph" in one_line_error(capsys)
