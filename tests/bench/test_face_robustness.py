"""Face robustness tables: each damage does what it says, and the table measures real faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimvision.bench.face_robustness import CORRUPTION_NAMES, CORRUPTIONS, corrupt


def _face_like(size: int = 96) -> np.ndarray:
    """A crop with detail at every scale: a colour gradient and a fine checkerboard."""
    y, x = np.mgrid[0:size, 0:size]
    checks = ((x // 2 + y // 2) % 2) * 60
    return np.stack([x * 2 + checks, y * 2 + checks, 255 - x - y + checks // 2], axis=-1).clip(0, 255).astype(np.uint8)


def test_every_corruption_keeps_the_shape_and_damages_the_crop():
    crop = _face_like()
    for corruption in CORRUPTIONS:
        for level in corruption.levels:
            damaged = corrupt(crop, corruption.name, level, face_width=150.0, rng=np.random.default_rng(0))
            assert damaged.shape == crop.shape and damaged.dtype == np.uint8, corruption.name
            if not (corruption.name == "face_width" and level >= 150):
                assert np.abs(damaged.astype(int) - crop).mean() > 0.05, (corruption.name, level)


def test_damage_grows_with_its_level_and_each_does_its_own_kind():
    crop, rng = _face_like(), np.random.default_rng(0)

    def error(kind, level, width=150.0):
        return np.abs(corrupt(crop, kind, level, width, np.random.default_rng(1)).astype(int) - crop).mean()

    assert error("jpeg", 10) > error("jpeg", 50) > error("jpeg", 95)
    assert error("face_width", 24) > error("face_width", 64) > error("face_width", 150) == 0
    assert error("face_width", 96, width=64.0) == 0  # a face already smaller than the level is left as it is
    assert error("blur", 3.0) > error("blur", 1.0) > error("blur", 1.0, width=30.0)  # sigma scales with the face
    assert error("noise", 32) > error("noise", 4)
    grey = corrupt(crop, "grey", 1.0, 150.0, rng)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    night = corrupt(crop, "night_ir", 1.0, 150.0, rng)
    assert (night[..., 0] == night[..., 2]).all() and night[..., 0].std() < grey[..., 0].std()
    with pytest.raises(Exception, match="unknown corruption"):
        corrupt(crop, "fog", 1.0, 150.0, rng)
    assert set(CORRUPTION_NAMES) == {"jpeg", "face_width", "blur", "noise", "grey", "night_ir"}



@pytest.fixture(scope="module")
def recognizer():
    pytest.importorskip("face_recognition_models", reason="needs the faces extra: pip install '.[faces]'")
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.faces import FaceRecognizer

    return FaceRecognizer(SessionSettings(threads=2))


def test_the_table_on_real_faces_and_its_plot(recognizer, tmp_path):
    from slimvision.bench.face_robustness import (
        Corruption, find_faces, installed_face_photos, recognizer_under_test, robustness_table, save_robustness_plot,
    )

    faces = find_faces(installed_face_photos(), recognizer)
    assert len(faces) >= 2 and all(face.width >= 48 for face in faces)
    model = recognizer_under_test("dlib", recognizer)
    corruptions = (Corruption("jpeg", (10, 95), "q", worse="down"), Corruption("night_ir", (1.0,), "ir"))
    table = robustness_table(faces, [model, model], corruptions, seed=0)
    jpeg = table["corruptions"]["jpeg"]["rows"]
    low, high = jpeg[0]["models"]["dlib"], jpeg[1]["models"]["dlib"]
    assert low["drift"] > high["drift"] > 0 and high["drift"] < 0.2  # quality 95 barely moves a descriptor
    assert high["self_match"] == 1.0 and high["agreement"] == 1.0
    assert table["pairs"] == len(faces) ** 2
    assert table["summary"]["dlib"]["largest_drop_below_reference"] == 0.0
    again = robustness_table(faces, [model], corruptions, seed=0)
    assert again["corruptions"] == {kind: {**value, "rows": [{"level": row["level"],
                                                              "models": {"dlib": row["models"]["dlib"]}}
                                                             for row in value["rows"]]}
                                    for kind, value in table["corruptions"].items()}  # the same seed, the same
    save_robustness_plot(table, tmp_path / "curves.png")
    assert Image.open(tmp_path / "curves.png").size[0] > 300
    with pytest.raises(Exception, match="exists; pass --overwrite"):
        save_robustness_plot(table, tmp_path / "curves.png")
    with pytest.raises(Exception, match="at least 2"):
        robustness_table(faces[:1], [model], corruptions)


def test_faces_eval_robustness_cli(recognizer, tmp_path, capsys):
    from slimvision.cli.main import main

    curves = tmp_path / "curves.png"
    assert main(["faces", "eval", "--robustness", "--curves", str(curves), "--json", "--threads", "2"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["reference"] == "dlib-resnet" and len(table["corruptions"]["jpeg"]["rows"]) == 6
    assert curves.is_file()
    assert main(["faces", "eval", "--robustness", "--curves", str(curves)]) != 0  # never overwritten silently
    assert "--overwrite" in capsys.readouterr().err
    assert main(["faces", "eval", "--robustness", "--photos", str(tmp_path / "missing")]) != 0
    assert "missing: not found" in capsys.readouterr().err
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    assert main(["faces", "eval", "--robustness", "--photos", str(blank)]) != 0
    assert "blank.png) hold 0 face(s)" in capsys.readouterr().err
    assert main(["faces", "eval"]) != 0
    assert "--robustness" in capsys.readouterr().err


@pytest.fixture(scope="module")
def student_run(tmp_path_factory, recognizer):
    """An exported (untrained) quarter-width student: a real graph and card, as training writes them."""
    torch = pytest.importorskip("torch")
    from slimvision.compress.prune_dlib import narrower_config
    from slimvision.export.faces import export_face_student
    from slimvision.models.faces.config import DlibResNetConfig
    from slimvision.models.faces.dlib_resnet import DlibResNet

    from slimvision.models.weights import save_model

    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("face-quarter")
    student = DlibResNet(narrower_config(DlibResNetConfig(), 0.25))
    save_model(student, run / "student")
    export_face_student(student, run)
    return run


def test_model_picks_the_embedder_and_galleries_refuse_another(student_run, tmp_path, capsys):
    import matplotlib

    from slimvision.assets import samples_dir
    from slimvision.cli.main import main

    hopper = str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    astronaut = str(samples_dir() / "content" / "astronaut.jpg")
    assert main(["faces", "verify", hopper, hopper, "--model", str(student_run / "embedder.onnx"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["distance"] == pytest.approx(0.0, abs=1e-5)
    assert main(["faces", "verify", hopper, astronaut, "--model", str(student_run)]) in (0, 1)  # the run folder works
    capsys.readouterr()
    assert main(["faces", "verify", hopper, astronaut, "--model", "face-detector-mtcnn"]) != 0
    assert "not a face embedder" in capsys.readouterr().err
    assert main(["faces", "verify", hopper, astronaut, "--model", str(tmp_path / "nothing.onnx")]) != 0
    assert "nothing.onnx" in capsys.readouterr().err
    people = tmp_path / "people"
    (people / "grace").mkdir(parents=True)
    Image.open(hopper).save(people / "grace" / "grace.jpg")
    gallery = str(tmp_path / "people.sqlite")
    assert main(["faces", "enroll", str(people), "--gallery", gallery, "-q"]) == 0
    capsys.readouterr()
    assert main(["faces", "identify", hopper, "--gallery", gallery, "--model", str(student_run)]) != 0
    assert "holds descriptors of dlib-resnet v1" in capsys.readouterr().err
    # The student's descriptors never go into dlib's gallery (they were filed under dlib's record) ...
    before = Path(gallery).read_bytes()
    assert main(["faces", "gallery", "add", "--gallery", gallery, "ada", hopper, "--model", str(student_run)]) == 2
    assert main(["faces", "enroll", str(people), "--gallery", gallery, "--model", str(student_run), "-q"]) == 2
    assert "holds descriptors of dlib-resnet v1" in capsys.readouterr().err and Path(gallery).read_bytes() == before
    # ... a new gallery takes the student's record, and the commands that compare nothing open it.
    own = str(tmp_path / "student.sqlite")
    assert main(["faces", "enroll", str(people), "--gallery", own, "--model", str(student_run), "-q"]) == 0
    capsys.readouterr()
    assert main(["faces", "gallery", "list", "--gallery", own, "--json"]) == 0
    assert [person["name"] for person in json.loads(capsys.readouterr().out)] == ["grace"]
    assert main(["faces", "gallery", "migrate", own, str(tmp_path / "copy.sqlite")]) == 0
    capsys.readouterr()
    assert main(["faces", "identify", hopper, "--gallery", str(tmp_path / "copy.sqlite"), "--model",
                 str(student_run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"][hopper][0]["name"] == "grace"
    assert main(["faces", "identify", hopper, "--gallery", own]) == 2  # dlib's descriptors against the student's


def test_robustness_compares_students_with_the_reference(student_run, capsys):
    from slimvision.cli.main import main

    assert main(["faces", "eval", "--robustness", "--compare", str(student_run), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert set(table["summary"]) == {"dlib-resnet", f"{student_run.name}-embedder"}
    assert table["summary"]["dlib-resnet"]["largest_drop_below_reference"] == 0.0
    assert main(["faces", "eval", "--robustness", "--compare", "face-embedder-dlib-resnet"]) != 0
    assert "the same embedder twice" in capsys.readouterr().err
