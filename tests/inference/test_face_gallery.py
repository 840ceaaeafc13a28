"""The enrolled-people gallery: edits, model checks, transactions (and a crash), search."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from slimvision.inference.face_gallery import (DLIB_RESNET_V1, EmbedderInfo, Gallery, GalleryError,
                                               SQLiteGallery)


def unit(rng: np.random.Generator, count: int, dim: int = 128) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_people_are_added_listed_renamed_and_removed(tmp_path):
    gallery = Gallery.open(tmp_path / "g.sqlite", DLIB_RESNET_V1)
    rng = np.random.default_rng(0)
    assert gallery.add("  Ada   Lovelace ", unit(rng, 2), ["a1.jpg", "a2.jpg"]) == 2
    assert gallery.add("Alan", unit(rng, 1)) == 1
    assert gallery.add("Ada Lovelace", unit(rng, 1)) == 1  # more faces of the same person
    assert [(p.name, p.faces) for p in gallery.people()] == [("Ada Lovelace", 3), ("Alan", 1)]
    gallery.rename("Alan", "Alan Turing")
    with pytest.raises(GalleryError, match="'Ada Lovelace' is already enrolled"):
        gallery.rename("Alan Turing", "Ada Lovelace")
    with pytest.raises(GalleryError, match="no person named 'Grace'"):
        gallery.remove("Grace")
    assert gallery.remove("Ada Lovelace") == 3
    assert [(p.name, p.faces) for p in gallery.people()] == [("Alan Turing", 1)]
    reopened = Gallery.open(tmp_path / "g.sqlite", DLIB_RESNET_V1)
    assert [p.name for p in reopened.people()] == ["Alan Turing"]


@pytest.mark.parametrize("vectors, message", [(np.zeros((1, 64)), "length 128"),
                                              (np.full((1, 128), np.nan), "finite"),
                                              (np.zeros((0, 128)), "length 128")])
def test_bad_descriptors_and_names_are_refused(vectors, message):
    gallery = Gallery.open(":memory:", DLIB_RESNET_V1)
    with pytest.raises(GalleryError, match=message):
        gallery.add("ada", vectors)
    with pytest.raises(GalleryError, match="name"):
        gallery.add("   ", np.zeros((1, 128)))
    assert gallery.people() == []


def test_descriptors_of_another_model_are_never_mixed_in(tmp_path):
    path = tmp_path / "g.sqlite"
    Gallery.open(path, DLIB_RESNET_V1).add("ada", np.zeros((1, 128)))
    student = EmbedderInfo("mobilefacenet", "1", 128, "cosine", 0.4)
    with pytest.raises(GalleryError, match="dlib-resnet v1.*cannot be compared with mobilefacenet v1"):
        Gallery.open(path, student)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(GalleryError, match="junk.sqlite: not a usable gallery"):
        Gallery.open(tmp_path / "junk.sqlite", DLIB_RESNET_V1)


def test_a_failed_write_changes_nothing(tmp_path):
    gallery = Gallery.open(tmp_path / "g.sqlite", DLIB_RESNET_V1)
    gallery.add("alan", np.zeros((1, 128)))
    with pytest.raises(Exception):
        gallery.add("ada", np.zeros((3, 128)), ["a.jpg", "b.jpg", object()])  # the third insert fails
    assert [(p.name, p.faces) for p in gallery.people()] == [("alan", 1)]


def test_a_crash_in_the_middle_of_an_enrolment_leaves_the_gallery_as_it_was(tmp_path):
    path = tmp_path / "g.sqlite"
    Gallery.open(path, DLIB_RESNET_V1).add("alan", np.zeros((1, 128)))
    script = textwrap.dedent(f"""
        import os, numpy as np
        import slimvision.inference.face_gallery as g
        g._bump = lambda cursor: os._exit(3)   # dies after the inserts, before the commit
        g.Gallery.open({str(path)!r}, g.DLIB_RESNET_V1).add("ada", np.ones((5, 128)))
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 3
    after = SQLiteGallery(path, DLIB_RESNET_V1)
    assert [(p.name, p.faces) for p in after.people()] == [("alan", 1)]
    assert after.vectors()[0].shape == (1, 128)


@pytest.mark.parametrize("index", ["exact", "faiss"])
def test_search_ranks_people_by_their_best_descriptor(index):
    if index == "faiss":
        pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    gallery = Gallery.open(":memory:", DLIB_RESNET_V1, index=index)
    people = {f"person{i}": unit(rng, 3) for i in range(40)}
    for name, vectors in people.items():
        gallery.add(name, vectors)
    query = people["person7"][1] + 0.01 * unit(rng, 1)[0]
    matches = gallery.search(query, top_k=3)
    assert [m.name for m in matches][0] == "person7" and len({m.name for m in matches}) == 3
    assert matches[0].distance == pytest.approx(np.linalg.norm(query - people["person7"][1]), abs=1e-4)
    assert matches[0].is_match and not matches[1].is_match  # 0.6: dlib's threshold; strangers are ~1.4 apart
    assert gallery.identify(query).name == "person7"
    assert gallery.identify(unit(rng, 1)[0] * 5) is None  # far from everyone: unknown
    gallery.remove("person7")  # the searcher notices the change
    assert gallery.search(query, top_k=1)[0].name != "person7"


def test_exact_and_faiss_agree_and_cosine_galleries_work():
    faiss = pytest.importorskip("faiss")
    assert faiss is not None
    rng = np.random.default_rng(2)
    cosine = EmbedderInfo("student", "1", 32, "cosine", 0.5)
    galleries = [Gallery.open(":memory:", cosine, index=kind) for kind in ("exact", "faiss")]
    vectors = rng.standard_normal((300, 32)).astype(np.float32)
    for gallery in galleries:
        for start in range(0, 300, 3):
            gallery.add(f"p{start // 3}", vectors[start:start + 3])
    queries = rng.standard_normal((5, 32)).astype(np.float32)
    exact, approximate = (g.search_many(queries, top_k=4) for g in galleries)
    for a, b in zip(exact, approximate):
        assert [m.name for m in a] == [m.name for m in b]
        assert np.allclose([m.distance for m in a], [m.distance for m in b], atol=1e-4)
    with pytest.raises(GalleryError, match="length 7"):
        galleries[0].search(np.zeros(7))
