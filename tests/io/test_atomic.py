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


# --------------------------------------------------------------------------- sets of outputs, stale temps
def _dead_pid() -> int:
    """The id of a process that has exited and been reaped (so the OS knows no such process)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temp_names_carry_the_writers_pid(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "out.tar.gz") as temp:
        assert temp.name.startswith(f".out.tar.{os.getpid()}-") and temp.name.endswith(".tmp.gz")
        temp.write_bytes(b"x")


def test_stale_temps_of_dead_writers_go_live_ones_and_other_files_stay(tmp_path: Path) -> None:
    import subprocess
    import sys

    from slimvision.io.atomic import remove_stale_temps, temp_name

    dead = tmp_path / temp_name(tmp_path / "a.png", pid=_dead_pid())
    live_writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / temp_name(tmp_path / "b.png", pid=live_writer.pid)
        mine = tmp_path / temp_name(tmp_path / "c.png")
        # Names of other shapes are never ours to delete: older temp names, user files.
        foreign = [tmp_path / ".d.1a2b3c4d.tmp.png", tmp_path / ".e.tmp.png", tmp_path / "f.99999999-0badcafe.tmp.png"]
        for path in [dead, live, mine, *foreign]:
            path.write_bytes(b"partial")
        assert remove_stale_temps(tmp_path) == [dead]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [live, mine, *foreign])
    finally:
        live_writer.kill()
        live_writer.wait()


def test_writing_into_a_folder_removes_dead_writers_temps(tmp_path: Path) -> None:
    from slimvision.io.atomic import temp_name

    folder = tmp_path / "out"
    folder.mkdir()
    leftover = folder / temp_name(folder / "old.png", pid=_dead_pid())
    leftover.write_bytes(b"half an image")
    write_bytes_atomic(folder / "new.png", b"data")
    assert _listing(folder) == ["new.png"]


def test_a_set_is_checked_whole_before_anything_is_written(tmp_path: Path) -> None:
    from slimvision.io.atomic import write_files_atomic

    (tmp_path / "x.json").write_text("old sidecar")
    with pytest.raises(OutputError, match=r"x.json: exists; pass --overwrite"):
        write_files_atomic([(tmp_path / "x.npy", b"vector"), (tmp_path / "x.json", b"{}")])
    assert _listing(tmp_path) == ["x.json"]  # x.npy was not written first
    style = tmp_path / "style.json"
    style.write_text("an input")
    with pytest.raises(OutputError, match="is an input file"):
        write_files_atomic([(tmp_path / "y.npy", b"v"), (style, b"{}")], overwrite=True, protected=[style])
    assert _listing(tmp_path) == ["style.json", "x.json"] and style.read_text() == "an input"
    with pytest.raises(OutputError, match="two outputs would be written to this same file"):
        write_files_atomic([(tmp_path / "z.npy", b"v"), (tmp_path / "sub" / ".." / "z.npy", b"w")])
    with pytest.raises(OutputError, match="is a directory"):
        write_files_atomic([(tmp_path / "w.npy", b"v"), (tmp_path, b"w")])
    assert _listing(tmp_path) == ["style.json", "x.json"]
    written = write_files_atomic([(tmp_path / "x.json", b"{}"), (tmp_path / "x.npy", b"vector")], overwrite=True)
    assert [p.name for p in written] == ["x.json", "x.npy"] and (tmp_path / "x.json").read_bytes() == b"{}"
    assert _listing(tmp_path) == ["style.json", "x.json", "x.npy"]


def test_a_set_that_fails_while_writing_leaves_none_of_its_files(tmp_path: Path, monkeypatch) -> None:
    import slimvision.io.atomic as atomic

    real_replace = os.replace
    calls = []

    def replace_then_fail(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", replace_then_fail)
    with pytest.raises(OutputError, match="b.npy: cannot replace the file: No space left on device"):
        atomic.write_files_atomic([(tmp_path / "b.json", b"{}"), (tmp_path / "b.npy", b"v")])
    assert _listing(tmp_path) == []  # b.json was taken back, no temp files stay


def test_plan_outputs_names_an_output_below_a_file(tmp_path: Path) -> None:
    from slimvision.io.atomic import plan_outputs

    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"cannot create folder .*file/sub: .*file is a file"):
        plan_outputs([tmp_path / "ok.png", tmp_path / "file" / "sub" / "a.png"])
    assert plan_outputs([tmp_path / "new" / "a.png"]) == [tmp_path / "new" / "a.png"]
    assert not (tmp_path / "new").exists()


def test_an_output_folder_inside_an_input_folder_is_refused(tmp_path: Path) -> None:
    from slimvision.io.atomic import check_outside_inputs

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    with pytest.raises(OutputError, match=r"photos: is the input folder; .* read as input by the next run"):
        check_outside_inputs(photos, [photos])
    with pytest.raises(OutputError, match=r"styled: is inside the input folder .*photos"):
        check_outside_inputs(photos / "sub" / ".." / "styled", [photos])
    check_outside_inputs(photos / "styled", [photos], recursive=False)  # not searched below its top
    check_outside_inputs(tmp_path / "styled", [photos, photos / "sub"])
    check_outside_inputs(photos, [tmp_path / "photo.png"])  # a file input names no folder


def test_a_reused_pid_does_not_keep_an_old_leftover(tmp_path: Path) -> None:
    """A temp file last written before its PID's present process started is a dead writer's.

    Containers often give every run the same PID, so "that PID is alive" alone would keep a
    killed run's leftover forever (our own PID included).
    """
    import subprocess
    import sys
    import time

    from slimvision.io.atomic import remove_stale_temps, temp_name

    if not Path("/proc/self/stat").exists():
        pytest.skip("process start times come from /proc")
    hour_ago = time.time() - 3600
    now_running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        reused = tmp_path / temp_name(tmp_path / "a.png", pid=now_running.pid)
        mine_old = tmp_path / temp_name(tmp_path / "b.png")
        mine_new = tmp_path / temp_name(tmp_path / "c.png")
        for path in (reused, mine_old, mine_new):
            path.write_bytes(b"partial")
        for path in (reused, mine_old):
            os.utime(path, (hour_ago, hour_ago))
        assert sorted(remove_stale_temps(tmp_path)) == sorted([reused, mine_old])
        assert _listing(tmp_path) == [mine_new.name]
    finally:
        now_running.kill()
        now_running.wait()
