"""Tests for slimvision.io.atomic: outputs are complete or absent, inputs are never clobbered."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from slimvision.errors import OutputError
from slimvision.io.atomic import atomic_write, write_bytes_atomic, write_text_atomic


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_clean_exit_moves_temp_onto_target(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    with atomic_write(target) as temp:
        assert temp.parent == tmp_path
        assert temp.name.startswith(".out.") and temp.name.endswith(".tmp.png")
        assert temp.exists() and not target.exists()
        temp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert _listing(tmp_path) == ["out.png"]


def test_exception_leaves_no_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as temp:
            temp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert _listing(tmp_path) == []


def test_keyboard_interrupt_also_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "out.txt") as temp:
            temp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert _listing(tmp_path) == []


def test_exception_keeps_the_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, overwrite=True) as temp:
            temp.write_text("new but broken")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _listing(tmp_path) == ["out.txt"]


def test_refuses_to_overwrite_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(OutputError) as err:
        with atomic_write(target):
            pytest.fail("must not yield")
    assert str(err.value) == f"{target}: exists; pass --overwrite to replace it"
    assert target.read_text() == "old"
    assert _listing(tmp_path) == ["out.txt"]


def test_overwrite_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_text_atomic(target, "new", overwrite=True)
    assert target.read_text() == "new"


def test_refuses_input_overwrite_even_with_overwrite(tmp_path: Path) -> None:
    source = tmp_path / "photo.jpg"
    source.write_bytes(b"original")
    with pytest.raises(OutputError) as err:
        write_bytes_atomic(source, b"x", overwrite=True, protected=[source])
    assert str(err.value) == f"{source}: is an input file; refusing to overwrite an input"
    assert source.read_bytes() == b"original"
    assert _listing(tmp_path) == ["photo.jpg"]


def test_input_detected_through_other_spellings_and_links(tmp_path: Path) -> None:
    source = tmp_path / "photo.jpg"
    source.write_bytes(b"original")
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.jpg"
    link.symlink_to(source)
    hard = tmp_path / "hard.jpg"
    os.link(source, hard)
    for target in (tmp_path / "sub" / ".." / "photo.jpg", link, hard):
        with pytest.raises(OutputError, match="is an input file"):
            write_bytes_atomic(target, b"x", overwrite=True, protected=[str(source)])
    assert source.read_bytes() == b"original"


def test_allow_input_overwrite(tmp_path: Path) -> None:
    source = tmp_path / "photo.jpg"
    source.write_bytes(b"original")
    write_bytes_atomic(source, b"new", overwrite=True, protected=[source], allow_input_overwrite=True)
    assert source.read_bytes() == b"new"


def test_creates_missing_parent_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    assert write_text_atomic(target, "hi") == target
    assert target.read_text() == "hi"


def test_parent_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    target = blocker / "out.txt"
    with pytest.raises(OutputError) as err:
        write_text_atomic(target, "hi")
    message = str(err.value)
    assert message.startswith(f"{target}: cannot create folder {blocker}") and "\n" not in message


def test_target_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a directory"):
        write_text_atomic(tmp_path, "hi", overwrite=True)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unwritable_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(OutputError, match="not writable"):
            write_text_atomic(folder / "out.txt", "hi")
    finally:
        folder.chmod(stat.S_IRWXU)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_final_file_gets_normal_permissions(tmp_path: Path) -> None:
    # tempfile.mkstemp would leave 0600; the output must get what the umask gives a plain open().
    umask = os.umask(0o022)
    try:
        target = write_text_atomic(tmp_path / "out.txt", "hi")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
