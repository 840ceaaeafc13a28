"""``slimvision faces gallery migrate SRC DST`` between SQLite and Milvus (milvus-lite, and a server
where there is one), and ``--gallery milvus://...`` on the gallery commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slimvision.inference.face_gallery import DLIB_RESNET_V1, Gallery
from tests.cli.helpers import exit_code, one_line_error

pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (pip install 'slimvision[scale]'): "
                                          "the Milvus migration tests are skipped")


@pytest.mark.parametrize("store", ["milvus-lite", "server"])
def test_migrate_sqlite_to_milvus_and_back_keeps_everyone(tmp_path, capsys, request, store):
    faces = (np.random.default_rng(3).normal(size=(3, 128)) * 0.1).astype(np.float32)
    with Gallery.open(tmp_path / "people.sqlite", DLIB_RESNET_V1) as gallery:
        gallery.add("ada", faces[:2], sources=["a1.jpg", "a2.jpg"], photos=["sha256:1", "sha256:2"])
        gallery.add("bob", faces[2:])
    # the server: tests/conftest.py's milvus_server (skipped, saying why, where there is none)
    milvus = request.getfixturevalue("server_location") if store == "server" else f"milvus://{tmp_path}/people.db"
    assert exit_code(["faces", "gallery", "migrate", tmp_path / "people.sqlite", milvus, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["descriptors"] == 3
    assert exit_code(["faces", "gallery", "list", "--gallery", milvus, "--json"]) == 0
    assert [(p["name"], p["faces"]) for p in json.loads(capsys.readouterr().out)] == [("ada", 2), ("bob", 1)]
    assert exit_code(["faces", "gallery", "rename", "--gallery", milvus, "bob", "robert"]) == 0
    assert exit_code(["faces", "gallery", "migrate", milvus, tmp_path / "back.sqlite"]) == 0
    with Gallery.open(tmp_path / "back.sqlite", DLIB_RESNET_V1, mode="r") as back:
        assert back.identify(faces[2]).name == "robert"
        assert back.find_photos(["sha256:2"]) == {"sha256:2": "ada"}
    capsys.readouterr()
    assert exit_code(["faces", "gallery", "migrate", milvus, tmp_path / "back.sqlite"]) == 2
    assert "already holds people" in one_line_error(capsys)
    assert exit_code(["faces", "gallery", "list", "--gallery", f"milvus://{tmp_path}/none.db"]) == 2
    assert "no such gallery" in one_line_error(capsys)
