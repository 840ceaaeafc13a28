"""Face recognition end to end on real photos: detect, align, embed, verify, enrol, identify, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

pytest.importorskip("face_recognition_models", reason="needs the faces extra: pip install '.[faces]'")

from slimvision.assets import samples_dir  # noqa: E402
from slimvision.inference.face_gallery import DLIB_RESNET_V1, Gallery  # noqa: E402
from slimvision.inference.faces import FaceRecognizer, NoFaceError, annotate, enroll_folder  # noqa: E402
from slimvision.graph.session import SessionSettings  # noqa: E402


def grace_hopper() -> Image.Image:
    import matplotlib

    return Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")


def another_photo_of(photo: Image.Image, seed: int) -> Image.Image:
    """The same person, photographed a little differently: mirrored, cropped, lit and scaled otherwise."""
    rng = np.random.default_rng(seed)
    width, height = photo.size
    left, top = (int(v) for v in rng.integers(0, 40, 2))
    changed = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).crop((left, top, width - 20, height - 10))
    changed = ImageEnhance.Brightness(changed).enhance(float(rng.uniform(0.75, 1.25)))
    return changed.resize((int(changed.width * 0.8), int(changed.height * 0.8)), Image.BILINEAR)


@pytest.fixture(scope="module")
def recognizer():
    return FaceRecognizer(SessionSettings(threads=2))


@pytest.fixture(scope="module")
def photos():
    astronaut = Image.open(samples_dir() / "content" / "astronaut.jpg").convert("RGB")
    return {"grace": grace_hopper(), "grace2": another_photo_of(grace_hopper(), 1),
            "grace3": another_photo_of(grace_hopper(), 2), "eileen": astronaut}


def test_verify_tells_the_same_person_from_another(recognizer, photos):
    same = recognizer.verify(np.asarray(photos["grace"]), np.asarray(photos["grace2"]))
    other = recognizer.verify(np.asarray(photos["grace"]), np.asarray(photos["eileen"]))
    assert same.same_person and same.distance < 0.45 and same.similarity > other.similarity
    assert not other.same_person and other.distance > 0.6
    with pytest.raises(NoFaceError, match="blank: no face found"):
        recognizer.verify(np.asarray(photos["grace"]), np.full((200, 200, 3), 128, np.uint8), ("grace", "blank"))


def test_the_pipeline_agrees_with_dlibs_own(recognizer, photos):
    dlib = pytest.importorskip("dlib", reason="dlib-bin is a test dependency")
    from slimvision.assets import DLIB_FACE_RESNET

    image = np.asarray(photos["grace"])
    models = DLIB_FACE_RESNET.path().parent
    (box,) = dlib.get_frontal_face_detector()(image, 1)
    shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))(image, box)
    theirs = np.array(dlib.face_recognition_model_v1(str(DLIB_FACE_RESNET.path())).compute_face_descriptor(
        dlib.get_face_chip(image, shape, size=150, padding=0.25)))
    ours = recognizer.main_face(image).descriptor
    assert np.linalg.norm(ours - theirs) < 0.2  # MTCNN's landmarks vs dlib's: 0.12 measured (threshold 0.6)


def test_enrol_a_folder_then_identify(recognizer, photos, tmp_path):
    people = tmp_path / "people"
    for name, keys in (("Grace Hopper", ["grace", "grace3"]), ("Eileen Collins", ["eileen"])):
        (people / name).mkdir(parents=True)
        for key in keys:
            photos[key].save(people / name / f"{key}.jpg")
    Image.new("RGB", (200, 200), "grey").save(people / "Grace Hopper" / "wall.png")
    (people / "Eileen Collins" / "broken.jpg").write_bytes(b"not a jpeg")
    gallery = Gallery.open(tmp_path / "g.sqlite", DLIB_RESNET_V1)
    report = enroll_folder(recognizer, gallery, people, progress=False)
    assert report.added == {"Grace Hopper": 2, "Eileen Collins": 1}
    assert set(Path(p).name for p in report.skipped) == {"wall.png", "broken.jpg"}
    assert "no face" in report.skipped[str(people / "Grace Hopper" / "wall.png")]
    (face,) = recognizer.identify(np.asarray(photos["grace2"]), gallery)
    assert face.name == "Grace Hopper" and face.matches[1].name == "Eileen Collins" and not face.matches[1].is_match
    assert recognizer.identify(np.full((300, 300, 3), 200, np.uint8), gallery) == []
    drawn = annotate(np.asarray(photos["grace2"]), [face])
    assert drawn.shape == np.asarray(photos["grace2"]).shape and not np.array_equal(drawn, np.asarray(photos["grace2"]))


def test_the_faces_cli_end_to_end(photos, tmp_path, capsys):
    from slimvision.cli.main import main

    people = tmp_path / "people"
    for name, key in (("grace", "grace"), ("eileen", "eileen")):
        (people / name).mkdir(parents=True)
        photos[key].save(people / name / f"{key}.jpg")
    query = tmp_path / "query.jpg"
    photos["grace2"].save(query)
    gallery = ["--gallery", str(tmp_path / "people.sqlite")]
    assert main(["faces", "enroll", str(people), *gallery, "--json", "--threads", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == {"eileen": 1, "grace": 1}
    assert main(["faces", "identify", str(query), *gallery, "--json", "--annotate", str(tmp_path / "drawn")]) == 0
    (face,) = json.loads(capsys.readouterr().out)["images"][str(query)]
    assert face["name"] == "grace" and len(face["landmarks"]) == 5 and face["matches"][0]["match"]
    assert (tmp_path / "drawn" / "query.faces.png").is_file()
    assert main(["faces", "verify", str(query), str(people / "grace" / "grace.jpg")]) == 0
    assert main(["faces", "verify", str(query), str(people / "eileen" / "eileen.jpg"), "--json"]) == 1
    capsys.readouterr()
    assert main(["faces", "gallery", "add", "grace", str(query), *gallery]) == 0
    assert "added 1 photo of 'grace'" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["faces", "gallery", "add", "nobody", *gallery])  # no photos given
    assert main(["faces", "gallery", "rename", "grace", "Grace Hopper", *gallery]) == 0
    assert main(["faces", "gallery", "remove", "eileen", *gallery]) == 0
    capsys.readouterr()
    assert main(["faces", "gallery", "list", "--json", *gallery]) == 0
    assert [p["name"] for p in json.loads(capsys.readouterr().out)] == ["Grace Hopper"]
    assert main(["faces", "detect", str(query), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["images"][str(query)]) == 1


@pytest.mark.parametrize("make, args, message", [
    (lambda p: p.write_bytes(b"\x89PNG broken"), ["detect"], "bad.png: "),
    (lambda p: Image.new("RGB", (300, 300), "white").save(p), ["verify", "{other}"], "bad.png: no face found"),
    (lambda p: None, ["identify", "--gallery", "{missing}"], "no such gallery"),
    (lambda p: Image.new("RGB", (30, 30)).save(p), ["detect"], "bad.png: "),
])
def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path, capsys, photos, make, args, message):
    from slimvision.cli.main import main

    bad = tmp_path / "bad.png"
    make(bad)
    other = tmp_path / "other.jpg"
    photos["grace"].save(other)
    command, *options = args
    options = [o.format(other=other, missing=tmp_path / "none.sqlite") for o in options]
    positional = [str(bad)] if command != "verify" else [str(bad), options.pop(0)]
    assert main(["faces", command, *positional, *options]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def test_video_with_the_motion_gate_names_the_visitor_as_without_it(photos, tmp_path, capsys):
    from slimvision.cli.main import main
    from slimvision.data.face_clips import DoorClip

    hall = np.asarray(Image.open(samples_dir() / "content" / "coffee.jpg").convert("RGB").resize((320, 240)))
    visitor = np.asarray(photos["grace"].resize((120, 140)))
    clip = DoorClip(hall, visitor, frames=40, enter=10, stay=12, walk=4, size=(320, 240), top=0.2)
    video = clip.write(tmp_path / "door.mp4", fps=10)
    people = tmp_path / "people" / "grace"
    people.mkdir(parents=True)
    photos["grace"].save(people / "grace.jpg")
    gallery = ["--gallery", str(tmp_path / "g.sqlite")]
    assert main(["faces", "enroll", str(tmp_path / "people"), *gallery, "--json"]) == 0
    events = {}
    for kind, extra in (("gated", []), ("every", ["--no-gate"])):
        capsys.readouterr()
        out = tmp_path / f"{kind}.jsonl"
        assert main(["faces", "video", str(video), *gallery, "--events", str(out), "-o", str(tmp_path / f"{kind}.mp4"),
                     *extra]) == 0
        events[kind] = [json.loads(line) for line in out.read_text().splitlines()]
        summary = capsys.readouterr().out
        assert "40 frames" in summary and ("0 skipped" in summary) == (kind == "every")
    assert events["gated"] == events["every"]
    assert events["gated"][0]["entered"] == ["grace"] and events["gated"][-1]["left"] == ["grace"]
    assert main(["faces", "video", str(tmp_path / "missing.mp4"), "--events", str(tmp_path / "x.jsonl")]) == 2


def test_eval_runs_the_lfw_protocol_on_a_generated_fixture(photos, tmp_path, capsys):
    from slimvision.cli.main import main

    root = tmp_path / "lfw"
    people = {"Grace_Hopper": [photos["grace"], photos["grace2"], photos["grace3"]],
              "Eileen_Collins": [photos["eileen"], another_photo_of(photos["eileen"], 5)]}
    for name, images in people.items():
        (root / name).mkdir(parents=True)
        for number, image in enumerate(images, 1):
            image.save(root / name / f"{name}_{number:04d}.jpg")
    lines = ["2\t2",
             "Grace_Hopper\t1\t2", "Eileen_Collins\t1\t2", "Grace_Hopper\t1\tEileen_Collins\t1",
             "Grace_Hopper\t2\tEileen_Collins\t2",
             "Grace_Hopper\t1\t3", "Grace_Hopper\t2\t3", "Grace_Hopper\t3\tEileen_Collins\t1",
             "Eileen_Collins\t2\tGrace_Hopper\t1"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    args = ["faces", "eval", "--pairs", str(tmp_path / "pairs.txt"), "--root", str(root)]
    assert main([*args, "--json", "--roc", str(tmp_path / "roc.png")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["pairs"] == 8 and scores["accuracy"] == 1.0 and scores["images_without_a_face"] == []
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
    (root / "Grace_Hopper" / "Grace_Hopper_0003.jpg").unlink()
    assert main(args) == 2
    assert "Grace_Hopper_0003.jpg: image listed in" in capsys.readouterr().err


def test_photos_with_several_similar_faces_are_not_enrolled_and_verify_takes_the_largest(recognizer, photos, tmp_path):
    grace = photos["grace"].resize((256, 300))
    pair = Image.new("RGB", (512, 300))
    pair.paste(grace, (0, 0))
    pair.paste(grace.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (256, 0))
    folder = tmp_path / "people" / "grace"
    folder.mkdir(parents=True)
    pair.save(folder / "two.jpg")
    report = enroll_folder(recognizer, Gallery.open(":memory:", DLIB_RESNET_V1), tmp_path / "people", progress=False)
    assert report.added == {} and report.skipped[str(folder / "two.jpg")] == "2 faces of similar size"
    assert len(recognizer(np.asarray(pair))) == 2
    big_and_small = Image.new("RGB", (700, 400))
    big_and_small.paste(photos["eileen"].resize((300, 300)), (0, 50))
    big_and_small.paste(grace.resize((110, 130)), (500, 20))
    result = recognizer.verify(np.asarray(big_and_small), np.asarray(photos["eileen"]))
    assert result.same_person  # the largest face is the subject
