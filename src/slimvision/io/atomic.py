"""Write output files atomically, so a crash or error never leaves a half-written file behind.

Every output slimvision writes goes through :func:`atomic_write`: the data is written to a hidden
temporary file in the destination folder and moved onto the final name with ``os.replace``, which
is atomic on POSIX and Windows when both paths are on the same filesystem (hence the same folder).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from slimvision.errors import OutputError

__all__ = ["atomic_write", "write_bytes_atomic", "write_text_atomic"]

logger = logging.getLogger(__name__)

# Give up creating a temp name after this many collisions (only reachable if something is badly wrong).
_MAX_TEMP_ATTEMPTS = 100


def _same_file(a: Path, b: Path) -> bool:
    """True if ``a`` and ``b`` name the same file (hard links and symlinks included)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass  # Fall back to comparing names when the files cannot be stat'ed.
    return a.resolve() == b.resolve()


def _check_target(
    target: Path, overwrite: bool, protected: Iterable[str | Path], allow_input_overwrite: bool
) -> None:
    """Refuse to clobber an input file or (unless asked to) an existing output."""
    if not allow_input_overwrite:
        # Checked first and regardless of ``overwrite``: --overwrite is about old outputs,
        # never about destroying the user's originals.
        for source in protected:
            if _same_file(target, Path(source)):
                raise OutputError(target, "is an input file; refusing to overwrite an input")
    if target.is_dir():
        raise OutputError(target, "is a directory; give a file name for the output")
    if target.exists() and not overwrite:
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
    return parent


def _create_temp(target: Path, parent: Path) -> Path:
    """Create an empty hidden temp file next to ``target`` and return its path.

    ``os.open`` with mode 0o666 lets the process umask decide the permissions, so the final file
    gets the same permissions a plain ``open()`` would give it (``tempfile.mkstemp`` forces 0o600).
    The temp name keeps the target's suffix so libraries that pick a format from it still work.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(_MAX_TEMP_ATTEMPTS):
        temp = parent / f".{target.stem}.{secrets.token_hex(4)}.tmp{target.suffix}"
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
