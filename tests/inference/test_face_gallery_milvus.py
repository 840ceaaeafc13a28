"""The Milvus gallery (milvus-lite in a temp folder, and a Milvus server where there is one) keeps
the SQLite gallery's semantics: the same calls give the same answers on every store. Skipped,
saying so, where pymilvus / milvus-lite (the scale extra) is not installed; the server cases where
no server is there (tests/conftest.py's ``milvus_server``: SLIMVISION_MILVUS_SERVER, or the ``milvus``
package's embedded server)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install 'slimvision[scale]'): "
                                       "the Milvus gallery tests are skipped")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (pip install 'slimvision[scale]'): "
                                          "the Milvus gallery tests are skipped")

from slimvision.inference.face_gallery import (DLIB_RESNET_V1, EmbedderInfo, Gallery, GalleryError,  # noqa: E402
                                               SQLiteGallery)
from slimvision.inference.face_gallery_milvus import MilvusGallery, parse_location  # noqa: E402


def vectors(count: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(count, 128)) * 0.1).astype(np.float32)


@pytest.fixture(params=["sqlite", "milvus", "server"])
def location(request, tmp_path) -> str:
    if request.param == "server":
        return request.getfixturevalue("server_location")
    return str(tmp_path / "people.sqlite") if request.param == "sqlite" else f"milvus://{tmp_path}/people.db"


def test_both_stores_enrol_identify_rename_and_remove_alike(location):
    faces = vectors(6)
    with Gallery.open(location, DLIB_RESNET_V1) as gallery:
        assert gallery.people() == [] and gallery.store.version() == 0
        assert gallery.add("ada", faces[:2], sources=["a1.jpg", "a2.jpg"], photos=["sha256:a1", None]) == 2
        assert gallery.add("bob", faces[2:4]) == 2
        # the same descriptor, or the same photo, is never stored twice (reported, left out)
        assert gallery.add("cy", np.vstack([faces[0], faces[4]]), photos=[None, "sha256:a1"]) == 0
        assert gallery.add("cy", faces[4:5]) == 1
        assert [(p.name, p.faces) for p in gallery.people()] == [("ada", 2), ("bob", 2), ("cy", 1)]
        matches = gallery.search(faces[2] + 0.001, top_k=2)
        assert [m.name for m in matches] == ["bob", matches[1].name] and matches[0].is_match
        assert matches[0].distance == pytest.approx(0.001 * np.sqrt(128), rel=1e-2)
        assert gallery.identify(faces[5] * 40) is None  # far from everyone: unknown
        assert gallery.find_photos(["sha256:a1", "sha256:zz"]) == {"sha256:a1": "ada"}
        before = gallery.store.version()
        gallery.rename("bob", "  robert  ")
        assert gallery.identify(faces[3]).name == "robert" and gallery.store.version() > before
        with pytest.raises(GalleryError, match="already enrolled"):
            gallery.rename("ada", "robert")
        with pytest.raises(GalleryError, match="no person named 'zed'"):
            gallery.remove("zed")
        assert gallery.remove("ada") == 2
        assert [p.name for p in gallery.people()] == ["cy", "robert"]


def test_the_model_record_is_kept_and_checked(location):
    with Gallery.open(location, DLIB_RESNET_V1) as gallery:
        gallery.add("ada", vectors(1))
    other = EmbedderInfo("face-student", "2", 128, "cosine", 0.4)
    with pytest.raises(GalleryError, match="holds descriptors of dlib-resnet v1"):
        Gallery.open(location, other)
    with Gallery.open(location, DLIB_RESNET_V1, mode="r") as gallery:
        assert [p.name for p in gallery.people()] == ["ada"]
        with pytest.raises(GalleryError, match="read-only"):
            gallery.add("bob", vectors(1, seed=1))


def test_a_missing_gallery_is_created_by_its_first_change_only(tmp_path):
    location = f"milvus://{tmp_path}/new.db"
    with pytest.raises(GalleryError, match="no such gallery"):
        MilvusGallery(location, DLIB_RESNET_V1, mode="w")
    store = MilvusGallery(location, DLIB_RESNET_V1)
    assert store.people() == [] and not (tmp_path / "new.db").exists()
    with pytest.raises(GalleryError, match="expected finite descriptors"):
        store.add("ada", np.full((1, 128), np.nan, np.float32))
    assert not (tmp_path / "new.db").exists()
    store.add("ada", vectors(1))
    store.close()
    assert (tmp_path / "new.db").is_dir()


@pytest.fixture(params=["milvus", "server"])
def milvus_location(request, tmp_path) -> str:
    """A new Milvus gallery: a milvus-lite folder, or a collection on the server."""
    return request.getfixturevalue("server_location") if request.param == "server" else f"milvus://{tmp_path}/g.db"


def test_cosine_galleries_measure_one_minus_cosine(milvus_location):
    cosine = EmbedderInfo("student", "1", 128, "cosine", 0.3)
    faces = vectors(3)
    with Gallery(MilvusGallery(milvus_location, cosine)) as gallery, \
            Gallery(SQLiteGallery(":memory:", cosine)) as reference:
        for store in (gallery, reference):
            store.add("ada", faces[:1])
            store.add("bob", faces[1:2])
        for query in (faces[0] * 3, faces[2]):
            got, want = gallery.search(query, 2), reference.search(query, 2)
            assert [m.name for m in got] == [m.name for m in want]
            assert [m.distance for m in got] == pytest.approx([m.distance for m in want], abs=1e-5)


@pytest.mark.parametrize("options", ["index=IVF_FLAT&nlist=4&nprobe=4", "index=FLAT", "index=HNSW"])
def test_other_indexes_search_alike_and_stay_with_the_gallery(milvus_location, options):
    faces = vectors(8)
    location = milvus_location
    with Gallery.open(f"{location}?{options}", DLIB_RESNET_V1) as gallery, \
            Gallery(SQLiteGallery(":memory:", DLIB_RESNET_V1)) as reference:
        for store in (gallery, reference):
            for person in range(4):
                store.add(f"p{person}", faces[2 * person:2 * person + 2])
        kind = options.split("&")[0].split("=")[1]
        store = gallery.store
        assert store.client.describe_index(store.collection, "vector")["index_type"] == kind  # built as asked
        for query in faces + 0.01:
            assert [(m.name, m.is_match) for m in gallery.search(query, 3)] == \
                [(m.name, m.is_match) for m in reference.search(query, 3)]
    with MilvusGallery(location, DLIB_RESNET_V1, mode="r") as store:  # reopened: searched with its own index
        assert store.index.kind == kind
    other = "FLAT" if kind != "FLAT" else "HNSW"
    with pytest.raises(GalleryError, match=f"its index is {kind}, set when it was created"):
        MilvusGallery(f"{location}?index={other}", DLIB_RESNET_V1)


def test_each_person_is_found_once_among_many_of_their_descriptors(milvus_location):
    """top_k people, not top_k descriptors: Milvus 2.3 ignores group_by_field and answers with
    descriptors, several of one person, and milvus-lite groups only the nearest top_k descriptors;
    the store asks again for more until it has top_k people."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(4, 128)).astype(np.float32)
    faces = (centres[:, None] + rng.normal(scale=0.01, size=(4, 40, 128))).astype(np.float32)  # 40 each
    # HNSW: IVF_FLAT's nprobe cells of 160 clustered descriptors can all be one person's
    with Gallery.open(f"{milvus_location}?index=HNSW", DLIB_RESNET_V1) as gallery, \
            Gallery(SQLiteGallery(":memory:", DLIB_RESNET_V1)) as reference:
        for store in (gallery, reference):
            for person in range(4):
                store.add(f"p{person}", faces[person])
        for query in centres:
            got, want = gallery.search(query, 3), reference.search(query, 3)
            assert [m.name for m in got] == [m.name for m in want] and len({m.name for m in got}) == 3
            assert [m.distance for m in got] == pytest.approx([m.distance for m in want], abs=1e-3)  # HNSW: near best


def test_a_bulk_enrolment_is_sealed_once_before_the_next_search(tmp_path):
    faces = vectors(12)
    store = MilvusGallery(f"milvus://{tmp_path}/bulk.db", DLIB_RESNET_V1)
    store.add("p0", faces[:2])
    flushes = []
    flush = store.client.flush
    store.client.flush = lambda *args, **kwargs: (flushes.append(args), flush(*args, **kwargs))[1]
    for person in range(1, 6):  # several calls, as a bulk enrolment makes
        store.add(f"p{person}", faces[2 * person:2 * person + 2])
    assert flushes == [] and len(store.people()) == 6  # written and readable, not sealed yet
    with Gallery(store) as gallery:
        assert [gallery.identify(faces[2 * person]).name for person in range(6)] == [f"p{p}" for p in range(6)]
        assert len(flushes) == 1  # one seal, at the first search
    with Gallery.open(f"milvus://{tmp_path}/bulk.db", DLIB_RESNET_V1, mode="r") as gallery:
        assert gallery.identify(faces[11]).name == "p5"


def test_locations_and_things_that_are_not_milvus_galleries(tmp_path):
    uri, collection, local, index = parse_location("milvus:/srv/faces.db")  # as Path writes it
    assert (uri, collection, local, index.kind, index.asked) == ("/srv/faces.db", "faces", True, "IVF_FLAT", False)
    uri, collection, local, index = parse_location("milvus://milvus.internal/door")
    assert (uri, collection, local, index.kind) == ("http://milvus.internal:19530", "door", False, "HNSW")
    assert parse_location("milvus:///x.db?nprobe=8")[3].search_params(1) == {"nprobe": 8}  # the file's default
    index = parse_location("milvus:///x.db?index=ivf_flat&nlist=256&nprobe=8")[3]
    assert (index.kind, index.asked, index.build_params(), index.search_params(1)) == \
        ("IVF_FLAT", True, {"nlist": 256}, {"nprobe": 8})
    for bad in ("index=IVF", "index=FLAT&index=HNSW", "index=IVF_FLAT&nlist=0", "ef=64"):
        with pytest.raises(GalleryError, match="unknown option"):
            parse_location(f"milvus:///x.db?{bad}")
    with pytest.raises(GalleryError, match="options of index=IVF_FLAT"):
        parse_location("milvus://db.local/door?nprobe=8")  # a server's default is HNSW
    (tmp_path / "file.db").write_bytes(b"SQLite format 3\x00")
    with pytest.raises(GalleryError, match="is a file, not a milvus-lite database"):
        MilvusGallery(f"milvus://{tmp_path}/file.db", DLIB_RESNET_V1)
    (tmp_path / "folder.db").mkdir()
    (tmp_path / "folder.db" / "notes.txt").write_text("mine")
    with pytest.raises(GalleryError, match="not a milvus-lite database"):
        MilvusGallery(f"milvus://{tmp_path}/folder.db", DLIB_RESNET_V1)
