"""The enrolled-people gallery: edits, model checks, transactions (and a crash), search."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from slimvision.inference import face_gallery
from slimvision.inference.face_gallery import (DLIB_RESNET_V1, Duplicate, EmbedderInfo, Enrolment, Gallery,
                                               GalleryError, SQLiteGallery, photo_digest)


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
    with pytest.raises(GalleryError, match="junk.sqlite: is not a slimvision gallery"):
        Gallery.open(tmp_path / "junk.sqlite", DLIB_RESNET_V1)


def test_a_failed_write_changes_nothing(tmp_path, monkeypatch):
    gallery = Gallery.open(tmp_path / "g.sqlite", DLIB_RESNET_V1)
    gallery.add("alan", np.zeros((1, 128)))
    with pytest.raises(GalleryError, match="sources must be text"):
        gallery.add("ada", np.ones((3, 128)), ["a.jpg", "b.jpg", object()])  # refused before the transaction
    digests = iter([b"1" * 16, b"2" * 16])  # the third insert fails, inside the transaction
    monkeypatch.setattr(face_gallery, "_vector_digest", lambda blob: next(digests))
    with pytest.raises(StopIteration):
        gallery.add("ada", unit(np.random.default_rng(3), 3))
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


def files_in(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_a_gallery_is_one_private_file_at_rest_even_when_the_process_never_closes_it(tmp_path):
    path = tmp_path / "g.sqlite"
    # The CLI leaves with os._exit (no interpreter teardown): nothing closes the connection.
    script = textwrap.dedent(f"""
        import os, numpy as np
        import slimvision.inference.face_gallery as g
        os.umask(0o022)
        gallery = g.Gallery.open({str(path)!r}, g.DLIB_RESNET_V1)
        gallery.add("ada", np.eye(128, dtype=np.float32)[:1])  # creates the file
        gallery.add("ada", np.eye(128, dtype=np.float32)[1:2])  # a change through the -wal file
        print(sorted(oct(os.stat(f.path).st_mode & 0o777) for f in os.scandir({str(tmp_path)!r})))
        os._exit(0)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["['0o600',", "'0o600',", "'0o600']"]  # the gallery, its -wal and -shm
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    (elsewhere / "g.sqlite").write_bytes(path.read_bytes())  # the .sqlite alone, as a user copies it
    assert [(p.name, p.faces) for p in Gallery.open(elsewhere / "g.sqlite", DLIB_RESNET_V1, mode="r").people()] \
        == [("ada", 2)]
    with Gallery.open(path, DLIB_RESNET_V1, mode="w") as gallery:
        gallery.add("alan", np.eye(128, dtype=np.float32)[2:3])
    assert files_in(tmp_path) == ["copy", "g.sqlite"]  # closed: no -wal, no -shm
    assert path.stat().st_mode & 0o777 == 0o600
    reader = textwrap.dedent(f"""
        import os, numpy as np
        import slimvision.inference.face_gallery as g
        gallery = g.Gallery.open({str(path)!r}, g.DLIB_RESNET_V1, mode="r")
        print(gallery.search(np.eye(128)[2], top_k=1)[0].name, len(gallery.people()))
        os._exit(0)   # never closed
    """)
    run = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["alan", "2"] and files_in(tmp_path) == ["copy", "g.sqlite"]


def test_a_gallery_file_name_may_hold_any_character(tmp_path):
    path = tmp_path / "our #1 people?%20.sqlite"
    with Gallery.open(path, DLIB_RESNET_V1) as gallery:
        gallery.add("ada", np.zeros((1, 128)))
        gallery.add("alan", np.ones((1, 128)))
    assert files_in(tmp_path) == [path.name]
    assert [p.name for p in Gallery.open(path, DLIB_RESNET_V1, mode="r").people()] == ["ada", "alan"]


def test_a_new_gallery_file_appears_only_when_a_change_commits(tmp_path):
    path = tmp_path / "new" / "g.sqlite"
    gallery = Gallery.open(path, DLIB_RESNET_V1)
    assert gallery.people() == [] and gallery.search(np.zeros(128)) == []
    with pytest.raises(GalleryError, match="finite"):
        gallery.add("ada", np.full((1, 128), np.nan))
    with pytest.raises(GalleryError, match="no person named 'ada'"):
        gallery.remove("ada")
    assert not path.exists()
    assert gallery.add("ada", np.zeros((1, 128))) == 1
    assert files_in(path.parent) == ["g.sqlite"]  # no temporary file left
    gallery.add("alan", np.ones((1, 128)))
    assert files_in(path.parent) == ["g.sqlite", "g.sqlite-shm", "g.sqlite-wal"]  # open: SQLite's WAL files
    gallery.close()
    assert files_in(path.parent) == ["g.sqlite"]


def test_two_creators_of_one_gallery_both_keep_their_people(tmp_path):
    path = tmp_path / "g.sqlite"
    first, second = (Gallery.open(path, DLIB_RESNET_V1) for _ in range(2))  # neither file exists yet
    first.add("ada", np.eye(128)[:1])
    second.add("alan", np.eye(128)[1:2])  # finds the name taken: adds to the first one's gallery
    first.close(), second.close()
    assert [p.name for p in Gallery.open(path, DLIB_RESNET_V1, mode="r").people()] == ["ada", "alan"]


def test_reading_never_creates_or_changes_a_file_and_other_files_are_refused(tmp_path):
    import sqlite3

    with pytest.raises(GalleryError, match="none.sqlite: no such gallery"):
        Gallery.open(tmp_path / "none.sqlite", DLIB_RESNET_V1, mode="r")
    with pytest.raises(GalleryError, match="none.sqlite: no such gallery"):
        Gallery.open(tmp_path / "none.sqlite", DLIB_RESNET_V1, mode="w")
    assert not (tmp_path / "none.sqlite").exists()
    (tmp_path / "empty.sqlite").touch()
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE meta (x)")  # a table name a gallery uses too
    other.commit()
    other.close()
    before = {name: (tmp_path / name).read_bytes() for name in ("empty.sqlite", "other.db")}
    for mode in ("r", "w", "c"):
        with pytest.raises(GalleryError, match="empty.sqlite: is an empty file, not a gallery"):
            Gallery.open(tmp_path / "empty.sqlite", DLIB_RESNET_V1, mode=mode)
        with pytest.raises(GalleryError, match="other.db: is an SQLite database but not a slimvision gallery"):
            Gallery.open(tmp_path / "other.db", DLIB_RESNET_V1, mode=mode)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    with pytest.raises(GalleryError, match=r"cannot create the gallery \(.*other.db is a file\)"):
        Gallery.open(tmp_path / "other.db" / "g.sqlite", DLIB_RESNET_V1).add("ada", np.zeros((1, 128)))
    assert files_in(tmp_path) == ["empty.sqlite", "other.db"]
    Gallery.open(tmp_path / "g.sqlite", DLIB_RESNET_V1).add("ada", np.zeros((1, 128)))
    reader = Gallery.open(tmp_path / "g.sqlite", DLIB_RESNET_V1, mode="r")
    with pytest.raises(GalleryError, match="g.sqlite: opened read-only"):
        reader.add("alan", np.ones((1, 128)))
    with pytest.raises(GalleryError, match="opened read-only"):
        reader.remove("ada")


def test_the_same_photo_or_descriptor_is_stored_once(tmp_path):
    rng = np.random.default_rng(4)
    photo = photo_digest(b"the bytes of grace.jpg")
    gallery = Gallery.open(tmp_path / "g.sqlite", DLIB_RESNET_V1)
    first, second, third = unit(rng, 3)
    assert gallery.add("grace", first[None], ["grace.jpg"], [photo]) == 1
    assert gallery.find_photos([photo, photo_digest(b"other")]) == {photo: "grace"}
    duplicates = gallery.add_people({
        "grace": Enrolment(np.stack([second, third]), photos=[photo, None]),  # same photo, new descriptor
        "ada": Enrolment(np.stack([first, third, third])),  # grace's descriptor; third twice in one call
        "alan": Enrolment(first[None])})  # nothing new: alan is not created
    assert duplicates == [Duplicate("grace", 0, "grace"), Duplicate("ada", 0, "grace"), Duplicate("ada", 1, "grace"),
                          Duplicate("ada", 2, "grace"), Duplicate("alan", 0, "grace")]
    assert [(p.name, p.faces) for p in gallery.people()] == [("grace", 2)]
    assert gallery.add("grace", third[None]) == 0


def test_a_gallery_made_before_duplicate_detection_is_read_as_is_and_upgraded_by_a_change(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    vector = np.eye(128, dtype=np.float32)[:1]
    Gallery.open(path, DLIB_RESNET_V1).add("ada", vector)
    old = sqlite3.connect(path)
    for statement in ("DROP INDEX faces_photo", "DROP INDEX faces_vector_digest",
                      "ALTER TABLE faces DROP COLUMN photo", "ALTER TABLE faces DROP COLUMN vector_digest"):
        old.execute(statement)
    old.commit()
    old.close()
    before = path.read_bytes()
    reader = Gallery.open(path, DLIB_RESNET_V1, mode="r")
    assert [p.name for p in reader.people()] == ["ada"] and reader.find_photos([photo_digest(b"x")]) == {}
    reader.close()
    assert path.read_bytes() == before
    with Gallery.open(path, DLIB_RESNET_V1, mode="w") as gallery:
        assert gallery.add("ada", vector) == 0  # the old row's descriptor was given its digest
        assert gallery.add("ada", np.ones((1, 128)), photos=[photo_digest(b"y")]) == 1
    assert [(p.name, p.faces) for p in Gallery.open(path, DLIB_RESNET_V1, mode="r").people()] == [("ada", 2)]


def _corrupt(path, statement: str, *values) -> None:
    import sqlite3

    connection = sqlite3.connect(path)
    connection.execute(statement, values)
    connection.commit()
    connection.close()


@pytest.mark.parametrize("damage, message", [
    (lambda p: _corrupt(p, "UPDATE faces SET vector = ? WHERE id = 2", b"\0" * 100), "face 2 of 'ada' holds 100-byte"),
    (lambda p: _corrupt(p, "UPDATE faces SET vector = ? WHERE id = 1", np.full(128, np.nan, np.float32).tobytes()),
     "face 1 of 'ada' holds a descriptor that is not finite"),
    (lambda p: _corrupt(p, "UPDATE faces SET vector = 'garbage' WHERE id = 1"), "face 1 of 'ada' holds a str"),
    (lambda p: _corrupt(p, "UPDATE people SET name = ? WHERE id = 1", b"\xff\x00"), "has no readable name"),
    (lambda p: _corrupt(p, "UPDATE meta SET value = 'many' WHERE key = 'changes'"),
     "model record is unreadable .*'many'"),
    (lambda p: _corrupt(p, "UPDATE meta SET value = 'nan' WHERE key = 'embedder.threshold'"),
     "model record is unreadable"),
    (lambda p: _corrupt(p, "UPDATE meta SET value = '64' WHERE key = 'embedder.dim'"), "holds descriptors of .*64-d"),
    (lambda p: _corrupt(p, "DELETE FROM meta WHERE key = 'embedder.metric'"), "model record is unreadable"),
    (lambda p: p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2]), "damaged gallery file"),
    (lambda p: p.write_bytes(p.read_bytes()[:10]), "not an SQLite database"),
    (lambda p: p.write_bytes(p.read_bytes()[:4096] + b"\xa5" * (len(p.read_bytes()) - 4096)), "damaged gallery file"),
])
def test_a_damaged_gallery_is_a_one_line_error_naming_the_file(tmp_path, damage, message):
    path = tmp_path / "g.sqlite"
    with Gallery.open(path, DLIB_RESNET_V1) as gallery:
        gallery.add("ada", unit(np.random.default_rng(5), 3))
    damage(path)
    with pytest.raises(GalleryError, match=message) as caught:
        gallery = Gallery.open(path, DLIB_RESNET_V1, mode="r")
        gallery.people()
        gallery.search(np.zeros(128))
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)
    with pytest.raises(GalleryError, match=message) as caught:  # what 'faces gallery migrate' reads (a traceback)
        Gallery.open(path, DLIB_RESNET_V1, mode="r").store.export_faces()
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_a_migration_never_leaves_out_faces_of_no_person_without_a_word(tmp_path):
    path = tmp_path / "g.sqlite"
    with Gallery.open(path, DLIB_RESNET_V1) as gallery:
        gallery.add("ada", unit(np.random.default_rng(5), 3))
    _corrupt(path, "UPDATE faces SET person = 999 WHERE id = 2")
    with pytest.raises(GalleryError, match="1 face.* belong to no person .face 2 first"):
        Gallery.open(path, DLIB_RESNET_V1, mode="r").store.export_faces()


def test_a_gallery_others_may_read_is_named_in_a_warning_and_left_as_it_is(tmp_path, caplog):
    path = tmp_path / "g.sqlite"
    Gallery.open(path, DLIB_RESNET_V1).add("ada", np.zeros((1, 128)))
    Gallery.open(path, DLIB_RESNET_V1, mode="r").close()
    assert "other users may read" not in caplog.text
    path.chmod(0o644)  # as an older slimvision made them
    Gallery.open(path, DLIB_RESNET_V1, mode="r").close()
    assert f"{path}: other users may read this gallery of faces (mode 644)" in caplog.text
    assert path.stat().st_mode & 0o777 == 0o644
    caplog.clear()
    other = tmp_path / "other.db"
    _corrupt(other, "CREATE TABLE t (x)")
    other.chmod(0o644)
    with pytest.raises(GalleryError, match="not a slimvision gallery"):
        Gallery.open(other, DLIB_RESNET_V1, mode="r")
    assert "other users may read" not in caplog.text  # not a gallery: nothing to say about faces


def test_leftovers_of_a_creator_killed_mid_creation_are_removed_by_the_next_one(tmp_path):
    # The gallery's temp files are io.atomic's (PID in the name): a dead creator's are removed
    # at once (an age rule kept them for a minute); a live creator's are kept.
    import subprocess
    import sys

    from slimvision.io.atomic import temp_name
    from tests.io.test_atomic import _dead_pid

    path = tmp_path / "g[1].sqlite"  # a name with glob characters
    stale = tmp_path / temp_name(path, pid=_dead_pid())
    journal = stale.with_name(f"{stale.name}-journal")
    creator = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        fresh = tmp_path / temp_name(path, pid=creator.pid)
        for leftover in (stale, journal, fresh):
            leftover.write_bytes(b"half a gallery")
        Gallery.open(path, DLIB_RESNET_V1).add("ada", np.zeros((1, 128)))
        assert files_in(tmp_path) == sorted([fresh.name, path.name])
    finally:
        creator.kill()
        creator.wait()


def test_a_broken_link_in_the_gallerys_place_is_an_error_not_a_new_file(tmp_path):
    path = tmp_path / "g.sqlite"
    path.symlink_to(tmp_path / "gone.sqlite")
    with pytest.raises(GalleryError, match="g.sqlite: cannot be created: the name is taken"):
        Gallery.open(path, DLIB_RESNET_V1).add("ada", np.zeros((1, 128)))
    assert files_in(tmp_path) == ["g.sqlite"] and not (tmp_path / "gone.sqlite").exists()
