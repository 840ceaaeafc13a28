"""``slimvision faces``: the gallery at rest and on disk, reading commands that never write,
sub-command arguments in any order, bounded numbers, and the box convention in every output."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimvision.cli.main import main
from slimvision.inference.face_gallery import DLIB_RESNET_V1, Gallery


def a_gallery(path: Path, people: dict[str, int]) -> Path:
    """A gallery of made-up descriptors (no model needed): ``people`` name -> how many."""
    rng = np.random.default_rng(0)
    with Gallery.open(path, DLIB_RESNET_V1) as gallery:
        for name, count in people.items():
            gallery.add(name, rng.standard_normal((count, 128)).astype(np.float32))
    return path


def last_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.mark.parametrize("order", [
    ["rename", "--gallery", "{g}", "ada", "Ada Lovelace"],
    ["rename", "ada", "--gallery", "{g}", "Ada Lovelace"],
    ["rename", "ada", "Ada Lovelace", "--gallery", "{g}"],
    ["rename", "--json", "ada", "--gallery", "{g}", "Ada Lovelace"],
])
def test_gallery_sub_commands_take_their_options_anywhere(tmp_path, capsys, order):
    path = a_gallery(tmp_path / "g.sqlite", {"ada": 2, "alan": 1})
    assert main(["faces", "gallery", *[word.format(g=path) for word in order]]) == 0
    assert "Ada Lovelace" in capsys.readouterr().out
    assert main(["faces", "gallery", "remove", "--gallery", str(path), "--json", "alan"]) == 0
    assert json.loads(capsys.readouterr().out) == {"removed": "alan", "descriptors": 1}
    assert main(["faces", "gallery", "list", "--json", "--gallery", str(path)]) == 0
    assert [(p["name"], p["faces"]) for p in json.loads(capsys.readouterr().out)] == [("Ada Lovelace", 2)]
    assert main(["faces", "gallery", "list", "--gallery", str(path)]) == 0
    assert "1 person, dlib-resnet v1 descriptors" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["g.sqlite"]  # every command closed it: one file


@pytest.mark.parametrize("argv", [
    ["gallery", "rename", "--gallery", "{g}", "only-one-name"],
    ["gallery", "remove", "--gallery", "{g}"],
    ["gallery", "add", "--gallery", "{g}", "nobody"],  # no photos
    ["gallery", "list", "--gallery", "{g}", "surplus"],
])
def test_gallery_sub_commands_refuse_missing_or_surplus_arguments(tmp_path, capsys, argv):
    path = a_gallery(tmp_path / "g.sqlite", {"ada": 1})
    with pytest.raises(SystemExit) as exit_:
        main(["faces", *[word.format(g=path) for word in argv]])
    assert exit_.value.code == 2 and last_error(capsys).startswith(("error:", "slimvision"))


def make_other_database(path: Path) -> Path:
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE invoices (number INTEGER, total REAL)")
    other.execute("INSERT INTO invoices VALUES (1, 9.5)")
    other.commit()
    other.close()
    return path


def make_damaged_gallery(path: Path) -> Path:
    a_gallery(path, {"ada": 2})
    damage = sqlite3.connect(path)
    damage.execute("UPDATE faces SET vector = ? WHERE id = 2", (b"\0" * 12,))
    damage.commit()
    damage.close()
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "no such gallery"),
    (lambda p: p.touch() or p, "is an empty file, not a gallery"),
    (make_other_database, "is an SQLite database but not a slimvision gallery"),
    (lambda p: (p.write_bytes(b"GIF89a and so on"), p)[1], "is not a slimvision gallery (not an SQLite database)"),
    (make_damaged_gallery, "damaged gallery: face 2 of 'ada' holds 12-byte descriptor"),
])
def test_reading_commands_never_create_or_change_a_gallery(tmp_path, capsys, make, message):
    path = make(tmp_path / "g.sqlite")
    before = path.read_bytes() if path.exists() else None
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64)).save(photo)
    for argv in (["identify", str(photo), "--gallery", str(path)], ["gallery", "list", "--gallery", str(path)]):
        assert main(["faces", *argv]) == 2
        error = capsys.readouterr().err.strip()
        assert error == error.splitlines()[0] and error.startswith(f"error: {path}: ") and message in error
        assert (path.read_bytes() if path.exists() else None) == before
    assert sorted(os.listdir(tmp_path)) == sorted(["photo.png"] + (["g.sqlite"] if before is not None else []))


@pytest.mark.parametrize("make, message", [
    (make_other_database, "is an SQLite database but not a slimvision gallery; refusing to use it"),
    (lambda p: p.touch() or p, "is an empty file, not a gallery"),
])
def test_enrolling_into_a_file_that_is_not_a_gallery_is_refused_and_leaves_it_alone(tmp_path, capsys, make, message):
    path = make(tmp_path / "book.db")
    before = path.read_bytes()
    (tmp_path / "people" / "ada").mkdir(parents=True)
    assert main(["faces", "enroll", str(tmp_path / "people"), "--gallery", str(path)]) == 2
    assert message in last_error(capsys) and path.read_bytes() == before
    assert main(["faces", "gallery", "rename", "a", "b", "--gallery", str(path)]) == 2
    assert path.read_bytes() == before


@pytest.mark.parametrize("argv, option", [
    (["detect", "x.jpg", "--min-face", "nan"], "--min-face"),
    (["detect", "x.jpg", "--min-face", "5"], "--min-face"),
    (["detect", "x.jpg", "--min-face", "1e9"], "--min-face"),
    (["detect", "x.jpg", "--min-score", "2"], "--min-score"),
    (["detect", "x.jpg", "--min-score", "-0.1"], "--min-score"),
    (["detect", "x.jpg", "--threads", "0"], "--threads"),
    (["detect", "x.jpg", "--threads", "inf"], "--threads"),
    (["verify", "a.jpg", "b.jpg", "--threshold", "nan"], "--threshold"),
    (["verify", "a.jpg", "b.jpg", "--threshold", "0"], "--threshold"),
    (["identify", "x.jpg", "--gallery", "g", "--top-k", "0"], "--top-k"),
    (["identify", "x.jpg", "--gallery", "g", "--top-k", "99999999999"], "--top-k"),
    (["identify", "x.jpg", "--gallery", "g", "--threshold", "-1"], "--threshold"),
    (["enroll", "people", "--gallery", "g", "--min-score", "inf"], "--min-score"),
    (["gallery", "add", "ada", "x.jpg", "--gallery", "g", "--min-face", "-40"], "--min-face"),
    (["eval", "--pairs", "p", "--root", "r", "--threads", "-1"], "--threads"),
])
def test_numeric_options_are_checked_when_parsed(capsys, argv, option):
    with pytest.raises(SystemExit) as exit_:
        main(["faces", *argv])
    error = last_error(capsys)
    assert exit_.value.code == 2 and option in error and "Traceback" not in error


@pytest.mark.parametrize("argv", [["detect", "x.jpg"], ["identify", "x.jpg", "--gallery", "g"],
                                  ["enroll", "people", "--gallery", "g"], ["eval", "--pairs", "p", "--root", "r"],
                                  ["gallery", "add", "ada", "x.jpg", "--gallery", "g"]])
def test_json_is_a_switch_and_commands_with_a_bar_take_q(argv):
    from slimvision.cli.main import build_parser

    args = build_parser().parse_args(["faces", *argv, "--json", "-q"])
    assert args.json is True and args.quiet is True


# ---------------------------------------------------------------------- with the models
needs_models = pytest.mark.skipif(importlib.util.find_spec("face_recognition_models") is None,
                                  reason="needs the faces extra: pip install '.[faces]'")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """people/grace/grace.jpg, people/eileen/eileen.jpg, people/eileen/wall.png (no face), and query.jpg."""
    import matplotlib

    from slimvision.assets import samples_dir

    root = tmp_path_factory.mktemp("faces")
    grace = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    for name, image in (("grace", grace), ("eileen", Image.open(samples_dir() / "content" / "astronaut.jpg"))):
        (root / "people" / name).mkdir(parents=True)
        image.convert("RGB").save(root / "people" / name / f"{name}.jpg")
    Image.new("RGB", (200, 200), "grey").save(root / "people" / "eileen" / "wall.png")
    grace.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((410, 480)).save(root / "query.jpg")
    return root


def slimvision(*argv: str) -> subprocess.CompletedProcess:
    """The installed command itself: it leaves by os._exit, so nothing is closed behind its back."""
    script = "import sys; from slimvision.cli.main import run; sys.argv[0] = 'slimvision'; run()"
    return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=300)


@needs_models
def test_an_enrolled_gallery_is_one_private_file_that_can_be_copied_alone(folder, tmp_path):
    gallery = tmp_path / "people.sqlite"
    run = slimvision("faces", "enroll", str(folder / "people"), "--gallery", str(gallery), "--threads", "2", "-q")
    assert run.returncode == 1, run.stderr  # one photo (the wall) has no face
    assert "enrolled 2 photos of 2 people" in run.stdout and "wall.png: no face found" in run.stdout
    assert sorted(os.listdir(tmp_path)) == ["people.sqlite"]  # no -wal holding the rows
    assert gallery.stat().st_mode & 0o777 == 0o600
    copy = tmp_path / "copy" / "people.sqlite"
    copy.parent.mkdir()
    shutil.copyfile(gallery, copy)  # the .sqlite alone
    with Gallery.open(copy, DLIB_RESNET_V1, mode="r") as copied:
        assert [(p.name, p.faces) for p in copied.people()] == [("eileen", 1), ("grace", 1)]
    sources = sqlite3.connect(copy).execute("SELECT source FROM faces ORDER BY source").fetchall()
    assert sources == [("eileen.jpg",), ("grace.jpg",)]  # file names only, not where the photos are


@needs_models
def test_enrolling_again_skips_the_photos_already_enrolled(folder, tmp_path, capsys):
    gallery = ["--gallery", str(tmp_path / "g.sqlite"), "--threads", "2"]
    assert main(["faces", "enroll", str(folder / "people"), *gallery, "--json", "--store-paths"]) == 1
    first = json.loads(capsys.readouterr().out)
    assert first["added"] == {"eileen": 1, "grace": 1} and first["failed"] == [str(folder / "people/eileen/wall.png")]
    assert main(["faces", "enroll", str(folder / "people"), *gallery, "--json"]) == 1  # the wall still fails
    second = json.loads(capsys.readouterr().out)
    assert second["added"] == {} and second["skipped"][str(folder / "people/grace/grace.jpg")] == \
        "already enrolled as 'grace'"
    copy = tmp_path / "people" / "eileen" / "again.jpg"
    copy.parent.mkdir(parents=True)
    shutil.copyfile(folder / "people" / "eileen" / "eileen.jpg", copy)
    assert main(["faces", "gallery", "add", "eileen", str(copy), str(copy), *gallery]) == 0
    out = capsys.readouterr().out
    assert "added 0 photos of 'eileen'" in out and "already enrolled as 'eileen'" in out
    assert main(["faces", "gallery", "list", "--json", *gallery[:2]]) == 0
    assert [p["faces"] for p in json.loads(capsys.readouterr().out)] == [1, 1]
    sources = sqlite3.connect(tmp_path / "g.sqlite").execute("SELECT source FROM faces").fetchall()
    assert sorted(sources) == [(str(folder / "people/eileen/eileen.jpg"),), (str(folder / "people/grace/grace.jpg"),)]


@needs_models
def test_a_failed_enrolment_makes_no_gallery_file(folder, tmp_path, capsys):
    (tmp_path / "people" / "nobody").mkdir(parents=True)
    shutil.copyfile(folder / "people" / "eileen" / "wall.png", tmp_path / "people" / "nobody" / "wall.png")
    assert main(["faces", "enroll", str(tmp_path / "people"), "--gallery", str(tmp_path / "g.sqlite"), "-q"]) == 1
    assert "no gallery file made" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["people"]


@needs_models
def test_boxes_are_whole_pixels_x0_y0_x1_y1_everywhere(folder, tmp_path, capsys):
    query = folder / "query.jpg"
    width, height = Image.open(query).size
    assert main(["faces", "detect", str(query), "--json", "--threads", "2"]) == 0
    detected = json.loads(capsys.readouterr().out)
    (face,) = detected["images"][str(query)]
    x0, y0, x1, y1 = face["box"]
    assert detected["box_format"] == "xyxy" and all(isinstance(v, int) for v in face["box"])
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in face["landmarks"])  # eyes, nose, mouth inside
    assert main(["faces", "detect", str(query)]) == 0
    assert f"box {x0},{y0},{x1},{y1}  score" in capsys.readouterr().out
    gallery = ["--gallery", str(tmp_path / "g.sqlite")]
    assert main(["faces", "gallery", "add", "grace", str(folder / "people/grace/grace.jpg"), *gallery, "-q"]) == 0
    capsys.readouterr()
    assert main(["faces", "identify", str(query), *gallery, "--json"]) == 0
    identified = json.loads(capsys.readouterr().out)
    assert identified["box_format"] == "xyxy" and identified["images"][str(query)][0]["box"] == [x0, y0, x1, y1]
    assert main(["faces", "identify", str(query), *gallery]) == 0
    assert f"grace  box {x0},{y0},{x1},{y1}  nearest" in capsys.readouterr().out
    assert main(["faces", "verify", str(query), str(folder / "people/grace/grace.jpg"), "--json"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["box_format"] == "xyxy" and verified["boxes"]["first"] == [x0, y0, x1, y1]
    assert main(["faces", "verify", str(query), str(folder / "people/grace/grace.jpg")]) == 0
    assert f"{query}: box {x0},{y0},{x1},{y1}" in capsys.readouterr().out
    assert "x0,y0,x1,y1" in subprocess.run([sys.executable, "-m", "slimvision.cli.main", "faces", "detect", "-h"],
                                           capture_output=True, text=True).stdout
