"""Write output files atomically, so a crash or error never leaves a half-written file behind.

Every output slimvision writes goes through :func:`atomic_write`: the data is written to a hidden
temporary file in the destination folder and moved onto the final name with ``os.replace``, which
is atomic on POSIX and Windows when both paths are on the same filesystem (hence the same folder).

A command that writes several files checks them all first (:func:`plan_outputs`) and writes a set
that belongs together (a vector and its sidecar) with :func:`write_files_atomic`, so an error
leaves none of them. Temp names carry the writer's PID (``.{stem}.{pid}-{hex}.tmp{suffix}``): a
process killed with SIGKILL cannot delete its temp file, so the next writer into that folder
removes temp files of ours whose process is gone (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from stat import S_ISDIR

from slimvision.errors import OutputError

__all__ = ["atomic_write", "check_outside_inputs", "plan_outputs", "remove_stale_temps", "write_bytes_atomic", "write_files_atomic",
           "write_text_atomic"]

logger = logging.getLogger(__name__)

# Give up creating a temp name after this many collisions (only reachable if something is badly wrong).
_MAX_TEMP_ATTEMPTS = 100

# ".{stem}.{pid}-{8 hex}.tmp{suffix}": only names of exactly this shape are ever cleaned up.
_TEMP_NAME = re.compile(r"^\..*\.(?P<pid>[0-9]{1,10})-[0-9a-f]{8}\.tmp(\.[^./]*)?$")

# Folders already cleaned by this process (a batch writes thousands of files into one folder).
_cleaned_folders: set[Path] = set()
_cleaned_lock = threading.Lock()


def temp_name(target: Path, pid: int | None = None) -> str:
    """The hidden temp name for ``target``: ``.{stem}.{pid}-{hex}.tmp{suffix}``.

    The suffix is kept so libraries that pick a format from it still work; the PID lets a later
    run tell a dead writer's leftover from a live writer's file in progress.
    """
    return f".{target.stem}.{os.getpid() if pid is None else pid}-{secrets.token_hex(4)}.tmp{target.suffix}"


def _process_alive(pid: int) -> bool:
    """True unless the OS says no process has this id (unsure counts as alive: never delete then)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or an id the OS cannot even look up
    return True


# When this module was loaded: none of this process's temp files can be older.
_LOADED = time.time()
# File times and process start times are compared with this much slack (coarse file systems).
_CLOCK_SLACK_S = 2.0


def _process_started(pid: int) -> float | None:
    """Start time (epoch seconds) of a live process, from /proc on Linux; None where unknown."""
    if pid == os.getpid():
        return _LOADED
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])  # field 22, after the command name
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _writer_gone(pid: int, written: float) -> bool:
    """True if the process that wrote a temp file (last written at ``written``) no longer runs.

    The PID may have been given to a new process since (PIDs are reused, and a container's
    runs often all get the same one): a process that started after the file was last written
    cannot be its writer.
    """
    if not _process_alive(pid):
        return True
    started = _process_started(pid)
    return started is not None and written < started - _CLOCK_SLACK_S


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temp files of ours in ``folder`` whose writer process no longer exists.

    Only names of the exact shape :func:`temp_name` makes are considered, and only when their
    PID is not a live process, or is one that started after the file was last written (a
    reused PID; known from /proc on Linux, else the file is kept: the safe side). Another run
    writing into the same folder keeps its files. Once per folder per process; POSIX only (on
    Windows ``os.kill`` cannot test a PID safely). Processes in another PID namespace sharing
    the folder are not supported.

    Returns:
        The files removed.
    """
    folder = Path(folder)
    if os.name != "posix":
        return []
    with _cleaned_lock:
        key = folder.resolve()
        if key in _cleaned_folders:
            return []
        _cleaned_folders.add(key)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            written = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if not _writer_gone(int(match["pid"]), written):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue  # gone already, or not ours to delete after all
        removed.append(Path(entry.path))
    if removed:
        logger.info("removed %d temporary file(s) left in %s by a run that was killed", len(removed), folder)
    return removed


class _Resolver:
    """``realpath`` with each folder resolved once (a batch puts thousands of files in one).

    Strings rather than Paths: at 10,000 outputs pathlib's own overhead was most of the time.
    """

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}

    def __call__(self, path: str | Path) -> str:
        text = os.fspath(path)
        folder, name = os.path.split(text)
        if name in ("", ".", ".."):
            return os.path.realpath(text)
        real = self._folders.get(folder)
        if real is None:
            real = self._folders[folder] = os.path.realpath(folder or ".")
        return os.path.join(real, name)


def _stat(path: str | Path) -> os.stat_result | None:
    """The file's stat (following links), or None where there is nothing to stat."""
    try:
        return os.stat(path)
    except (OSError, ValueError):  # missing, below a file, unreadable, or a name the OS refuses
        return None


class _InputIndex:
    """The protected files, looked up by resolved path and by (device, inode) in O(1) each."""

    def __init__(self, protected: Iterable[str | Path], resolve: _Resolver) -> None:
        self.paths: set[str] = set()
        self.inodes: set[tuple[int, int]] = set()
        for source in protected:
            self.paths.add(resolve(source))
            stat = _stat(source)
            if stat is not None:
                self.inodes.add((stat.st_dev, stat.st_ino))

    def holds(self, resolved: str, stat: os.stat_result | None) -> bool:
        """True if the target is one of the inputs (another spelling, a symlink or a hard link)."""
        return resolved in self.paths or (stat is not None and (stat.st_dev, stat.st_ino) in self.inodes)


def _first_file_above(folder: Path) -> Path | None:
    """The nearest existing ancestor of an output (``folder`` included) if it is not a folder."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def plan_outputs(
    paths: Iterable[str | Path],
    *,
    overwrite: bool = False,
    protected: Iterable[str | Path] = (),
    allow_input_overwrite: bool = False,
    duplicate_problem: str = "two outputs would be written to this same file; rename one",
) -> list[Path]:
    """Check a whole set of outputs before any is written; return them as Paths.

    Every check :func:`atomic_write` makes, for all outputs at once, plus: two outputs naming
    the same file (``duplicate_problem`` says so). The folders that exist are cleared of stale
    temp files (see :func:`remove_stale_temps`). Nothing is created. One stat per output and
    one path resolution per folder: 10,000 outputs into one folder take 0.4-0.7 s on a shared 2-core VM.

    Raises:
        OutputError: for the first output that is an input, a folder, twice in the set, below a
            file, or exists without ``overwrite`` (naming it as given).

    Example:
        >>> plan_outputs(["out/v.json", "out/v.npy"], protected=["style.jpg"])  # doctest: +SKIP
        [PosixPath('out/v.json'), PosixPath('out/v.npy')]
    """
    targets = [Path(path) for path in paths]
    resolve = _Resolver()
    inputs = _InputIndex(() if allow_input_overwrite else protected, resolve)
    seen: set[str] = set()
    seen_files: set[tuple[int, int]] = set()
    blockers: dict[Path, Path | None] = {}
    for target in targets:
        resolved, stat = resolve(target), _stat(target)
        identity = None if stat is None else (stat.st_dev, stat.st_ino)
        if resolved in seen or identity in seen_files:
            raise OutputError(target, duplicate_problem)
        seen.add(resolved)
        if identity is not None:
            seen_files.add(identity)
        if inputs.holds(resolved, stat):
            raise OutputError(target, "is an input file; refusing to overwrite an input")
        if stat is None:
            if target.parent not in blockers:
                blockers[target.parent] = _first_file_above(target.parent)
            blocker = blockers[target.parent]
            if blocker is not None:
                raise OutputError(target, f"cannot create folder {target.parent}: {blocker} is a file")
        elif S_ISDIR(stat.st_mode):
            raise OutputError(target, "is a directory; give a file name for the output")
        elif not overwrite:
            raise OutputError(target, "exists; pass --overwrite to replace it")
    for folder in blockers.keys() | {target.parent for target in targets}:
        if folder.is_dir():
            remove_stale_temps(folder)
    return targets


def check_outside_inputs(folder: str | Path, inputs: Iterable[str | Path], *, recursive: bool = True) -> None:
    """Refuse an output folder that is an input folder, or (``recursive``) lies inside one.

    Files written there would be read back as inputs by the next run over the same folders
    (a resumed batch would paint its own results; training would learn from its samples).

    Raises:
        OutputError: naming ``folder`` and the input folder it is in.

    Example:
        >>> check_outside_inputs("photos/styled", ["photos"])  # doctest: +SKIP
        OutputError: photos/styled: is inside the input folder photos; ...
    """
    target = Path(folder).resolve()
    for source in inputs:
        source_path = Path(source)
        if not source_path.is_dir():
            continue
        resolved = source_path.resolve()
        if target == resolved or (recursive and resolved in target.parents):
            where = "is the input folder" if target == resolved else f"is inside the input folder {source_path}"
            raise OutputError(folder, f"{where}; what is written there would be read as input by the next run "
                                      "(give a folder outside it)")


def _check_target(
    target: Path, overwrite: bool, protected: Iterable[str | Path], allow_input_overwrite: bool
) -> None:
    """Refuse to clobber an input file or (unless asked to) an existing output.

    Only a target that exists can be an input (inputs are files being read), so a new output
    costs one stat however many inputs there are; an existing one is compared with each input
    by (device, inode), which catches other spellings, symlinks and hard links alike.
    """
    stat = _stat(target)
    if stat is None:
        return
    if not allow_input_overwrite:
        # Checked first and regardless of ``overwrite``: --overwrite is about old outputs,
        # never about destroying the user's originals.
        identity = (stat.st_dev, stat.st_ino)
        for source in protected:
            other = _stat(source)
            if other is not None and (other.st_dev, other.st_ino) == identity:
                raise OutputError(target, "is an input file; refusing to overwrite an input")
    if S_ISDIR(stat.st_mode):
        raise OutputError(target, "is a directory; give a file name for the output")
    if not overwrite:
        raise OutputError(target, "exists; pass --overwrite to replace it")


def _ensure_parent(target: Path) -> Path:
    """Create the destination folder (with parents) if needed and return it."""
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(target, f"cannot create folder {parent}: {reason}") from None
    if not parent.is_dir():
        raise OutputError(target, f"cannot create folder {parent}: a file has that name")
    remove_stale_temps(parent)
    return parent


def _create_temp(target: Path, parent: Path) -> Path:
    """Create an empty hidden temp file next to ``target`` and return its path.

    ``os.open`` with mode 0o666 lets the process umask decide the permissions, so the final file
    gets the same permissions a plain ``open()`` would give it (``tempfile.mkstemp`` forces 0o600).
    The temp name (see :func:`temp_name`) keeps the target's suffix and carries our PID.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(_MAX_TEMP_ATTEMPTS):
        temp = parent / temp_name(target)
        try:
            fd = os.open(temp, flags, 0o666)
        except FileExistsError:
            continue
        except PermissionError:
            raise OutputError(target, f"folder {parent} is not writable (permission denied)") from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise OutputError(target, f"cannot write in folder {parent}: {reason}") from None
        os.close(fd)
        return temp
    raise OutputError(target, f"cannot create a temporary file in folder {parent}")


def _fsync_file(path: Path) -> None:
    """Flush the file's data to disk so the rename never exposes an empty or partial file."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself; best effort, since not every OS/filesystem supports it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(
    path: str | Path,
    *,
    overwrite: bool = False,
    protected: Iterable[str | Path] = (),
    allow_input_overwrite: bool = False,
) -> Iterator[Path]:
    """Yield a temporary path to write into; move it onto ``path`` only if the block succeeds.

    The temp file is hidden, lives in the same folder as ``path`` (so the final ``os.replace`` is
    atomic) and has the same suffix. If the block raises, the temp file is deleted and the
    exception propagates, so ``path`` is either untouched or completely written.

    Args:
        path: Final destination of the file. Missing parent folders are created.
        overwrite: Replace ``path`` if it already exists.
        protected: Input files that must never be overwritten, even with ``overwrite=True``.
        allow_input_overwrite: Explicitly allow replacing a file listed in ``protected``.

    Yields:
        The temporary file path (it exists and is empty) to write the data into.

    Raises:
        OutputError: ``path`` exists and ``overwrite`` is False; ``path`` is one of ``protected``;
            ``path`` is a directory; or its folder cannot be created or written.

    Example:
        >>> with atomic_write("out/result.json", overwrite=True) as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    target = Path(path)
    protected = tuple(protected)  # It may be a one-shot iterator; we only read it once anyway.
    _check_target(target, overwrite, protected, allow_input_overwrite)
    parent = _ensure_parent(target)
    temp = _create_temp(target, parent)
    logger.debug("writing %s via temporary file %s", target, temp.name)
    try:
        yield temp
        _fsync_file(temp)
        try:
            os.replace(temp, target)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise OutputError(target, f"cannot replace the file: {reason}") from None
    except BaseException:
        # BaseException too: Ctrl-C in the middle of a write must not leave a stray temp file.
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(parent)


def write_bytes_atomic(
    path: str | Path,
    data: bytes,
    *,
    overwrite: bool = False,
    protected: Iterable[str | Path] = (),
    allow_input_overwrite: bool = False,
) -> Path:
    """Atomically write ``data`` to ``path`` (see :func:`atomic_write` for the checks) and return it.

    Example:
        >>> write_bytes_atomic("out/blob.bin", b"\\x00\\x01")  # doctest: +SKIP
        PosixPath('out/blob.bin')
    """
    with atomic_write(
        path, overwrite=overwrite, protected=protected, allow_input_overwrite=allow_input_overwrite
    ) as temp:
        temp.write_bytes(data)
    return Path(path)


def write_text_atomic(
    path: str | Path,
    text: str,
    *,
    encoding: str = "utf-8",
    overwrite: bool = False,
    protected: Iterable[str | Path] = (),
    allow_input_overwrite: bool = False,
) -> Path:
    """Atomically write ``text`` to ``path`` (UTF-8 by default) and return the path.

    Example:
        >>> write_text_atomic("out/report.txt", "done\\n", overwrite=True)  # doctest: +SKIP
        PosixPath('out/report.txt')
    """
    return write_bytes_atomic(
        path,
        text.encode(encoding),
        overwrite=overwrite,
        protected=protected,
        allow_input_overwrite=allow_input_overwrite,
    )


def write_files_atomic(
    files: Sequence[tuple[str | Path, bytes | Callable[[], bytes]]],
    *,
    overwrite: bool = False,
    protected: Iterable[str | Path] = (),
) -> list[Path]:
    """Write a set of files that belong together: all of them, or (on an error) none.

    All outputs are checked first (:func:`plan_outputs`), every file is written and flushed to
    its temp file, and only then are they renamed, in the order given. Put the file whose
    presence means "complete" last (a vector after its sidecar): a kill between two renames
    then never leaves the main file without its companion. If a rename fails, the files of
    this set renamed before it that did not exist before are removed again.

    Args:
        files: (path, data) pairs; data may be a function making the bytes, called when that
            file is written, so a large set is never all in memory at once.
        overwrite: Replace files that exist.
        protected: Input files that none of ``files`` may be, even with ``overwrite``.

    Returns:
        The paths written, in order.

    Raises:
        OutputError: as :func:`plan_outputs`, or a temp file cannot be written or renamed.

    Example:
        >>> write_files_atomic([("v.json", b"{}"), ("v.npy", data)])  # doctest: +SKIP
        [PosixPath('v.json'), PosixPath('v.npy')]
    """
    targets = plan_outputs([path for path, _ in files], overwrite=overwrite, protected=protected)
    temps: list[Path] = []
    try:
        for target, (_, data) in zip(targets, files):
            temp = _create_temp(target, _ensure_parent(target))
            temps.append(temp)
            temp.write_bytes(data() if callable(data) else data)
            _fsync_file(temp)
        _rename_all(targets, temps)
    except BaseException:
        for temp in temps:
            temp.unlink(missing_ok=True)
        raise
    for folder in {target.parent for target in targets}:
        _fsync_dir(folder)
    return targets


def _rename_all(targets: list[Path], temps: list[Path]) -> None:
    """Move each temp onto its target; on a failure, take back the new files already moved."""
    created: list[Path] = []
    for target, temp in zip(targets, temps):
        existed = target.exists()
        try:
            os.replace(temp, target)
        except OSError as exc:
            for path in created:
                path.unlink(missing_ok=True)
            reason = exc.strerror or type(exc).__name__
            raise OutputError(target, f"cannot replace the file: {reason}") from None
        if not existed:
            created.append(target)
