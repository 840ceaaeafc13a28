"""The gallery of enrolled people: their face descriptors, stored, searched and edited safely.

A gallery belongs to one embedding model. Descriptors of different models live in different
spaces, so the model's name, version, length and metric are written into the gallery when it
is created, and opening it with another model is refused.

:class:`GalleryStore` is the storage interface; :class:`SQLiteGallery` is the default store.
A gallery is one file at rest, readable by its owner only (0600): descriptors are float32
blobs; every change is one transaction, checkpointed into the file as soon as it commits, so
copying the file alone copies every person in it. A new gallery file appears only when its
first change commits, and an existing file that is not a slimvision gallery is never written
to. A photo (its bytes) or a descriptor already in the gallery is not stored twice.
A server database can implement the same interface. :class:`Gallery` adds search on top of a
store: exact search with numpy, or a FAISS index (``pip install faiss-cpu``) for galleries too
large to scan. Matches are per person: a person's best descriptor counts.

Example:
    >>> import numpy as np
    >>> gallery = Gallery.open(":memory:", DLIB_RESNET_V1)
    >>> gallery.add("ada", np.eye(128, dtype=np.float32)[:1])
    1
    >>> [(match.name, round(match.distance, 3)) for match in gallery.search(np.eye(128)[0], top_k=1)]
    [('ada', 0.0)]
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from slimvision.errors import SlimvisionError
from slimvision.io.atomic import _first_file_above, remove_stale_temps, temp_name

SCHEMA_VERSION = 1
METRICS = ("euclidean", "cosine")
#: How a gallery is opened, as for ``dbm.open``: "r" read only, "w" read and change an existing
#: gallery, "c" as "w" and create a missing one (the file appears with its first committed change).
MODES = ("r", "w", "c")
#: The first bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"

_Result = TypeVar("_Result")

logger = logging.getLogger(__name__)


class GalleryError(SlimvisionError):
    """A gallery cannot be used as asked (wrong model, unknown person, name taken, damaged file).

    ``path`` is the gallery file as the caller named it (None where the problem is not the
    file's); ``problem`` is the message without it, for callers that must not show paths.
    """

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


@dataclass(frozen=True)
class EmbedderInfo:
    """What a gallery records about the model whose descriptors it holds.

    ``threshold``: the largest distance at which two faces count as one person (for the cosine
    metric the distance is 1 - cosine similarity).
    """

    name: str
    version: str
    dim: int
    metric: str
    threshold: float

    def __post_init__(self) -> None:
        if self.metric not in METRICS or self.dim < 1 or not self.threshold > 0:
            raise ValueError(f"bad EmbedderInfo {self}: metric in {METRICS}, dim >= 1, threshold > 0")


#: dlib's ResNet: 128-d, Euclidean, one person below 0.6 (dlib's own calibration).
DLIB_RESNET_V1 = EmbedderInfo("dlib-resnet", "1", 128, "euclidean", 0.6)
#: Open an existing gallery ("r" or "w") with whatever model record it holds: for the commands that
#: list, rename, remove or copy people and never compare descriptors (never to create one).
ANY_EMBEDDER = EmbedderInfo("*", "*", 1, "euclidean", 1.0)  # a sentinel, compared by identity


def stored_embedder(embedder: EmbedderInfo, stored: dict[str, str], path: str) -> EmbedderInfo:
    """``embedder``, or for :data:`ANY_EMBEDDER` the model the gallery's record names (name, version, dim)."""
    if embedder is not ANY_EMBEDDER:
        return embedder
    try:
        return EmbedderInfo(stored["embedder.name"], stored["embedder.version"], int(stored["embedder.dim"]),
                            embedder.metric, embedder.threshold)
    except (KeyError, ValueError, TypeError) as error:
        raise GalleryError(f"damaged gallery: its model record is unreadable ({error})", path) from None


@dataclass(frozen=True)
class Person:
    name: str
    faces: int
    added: str


@dataclass(frozen=True)
class Match:
    """A gallery person near a query: the best of their descriptors, and whether it is close enough."""

    name: str
    distance: float
    is_match: bool


@dataclass(frozen=True)
class Enrolment:
    """One person's new descriptors (N, dim) and, per descriptor, what to remember of its photo.

    ``sources``: where each came from, as the caller wants it recorded (a file name, a path,
    "upload") or None. ``photos``: each photo's :func:`photo_digest`, so that the same photo is
    never stored twice, or None where unknown (an identical descriptor is still caught).
    """

    vectors: np.ndarray
    sources: list[str | None] | None = None
    photos: list[str | None] | None = None


@dataclass(frozen=True)
class Duplicate:
    """A descriptor that was not added: the gallery already holds its photo, or that very descriptor."""

    name: str  # the person it was for, as the caller named them
    position: int  # its index among the person's new descriptors
    enrolled_as: str  # the person who holds it already


def photo_digest(data: bytes) -> str:
    """The content digest of a photo file's bytes, as galleries record it."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _vector_digest(blob: bytes) -> bytes:
    return hashlib.blake2b(blob, digest_size=16).digest()


class GalleryStore(Protocol):
    """Where descriptors live. Every method is atomic: it happens completely or not at all."""

    embedder: EmbedderInfo

    def add(self, name: str, vectors: np.ndarray, sources: list[str | None] | None = None,
            photos: list[str | None] | None = None) -> int: ...
    def add_people(self, people: dict[str, Enrolment]) -> list[Duplicate]: ...
    def find_photos(self, digests: list[str]) -> dict[str, str]: ...
    def remove(self, name: str) -> int: ...
    def rename(self, old: str, new: str) -> None: ...
    def people(self) -> list[Person]: ...
    def vectors(self) -> tuple[np.ndarray, np.ndarray, list[str]]: ...
    def version(self) -> int: ...
    def close(self) -> None: ...


def check_enrolment(name: str, faces: Enrolment, dim: int) -> tuple[np.ndarray, list, list]:
    """One person's new descriptors as (N, dim) float32, with a source and a photo digest (or None)
    per descriptor: what every store checks before adding anything."""
    vectors = np.ascontiguousarray(faces.vectors, np.float32).reshape(-1, dim) \
        if np.size(faces.vectors) % dim == 0 else None
    if vectors is None or not len(vectors) or not np.isfinite(vectors).all():
        raise GalleryError(f"add {name!r}: expected finite descriptors of length {dim}")
    per_row = []
    for what, values in (("sources", faces.sources), ("photos", faces.photos)):
        values = list(values) if values is not None else [None] * len(vectors)
        if len(values) != len(vectors):
            raise GalleryError(f"add {name!r}: {len(vectors)} descriptors but {len(values)} {what}")
        if not all(value is None or isinstance(value, str) for value in values):
            raise GalleryError(f"add {name!r}: {what} must be text or None")
        per_row.append(values)
    return vectors, per_row[0], per_row[1]


def enrolments(rows: list[tuple[str, bytes | np.ndarray, str | None, str | None]], dim: int) -> dict[str, Enrolment]:
    """(name, descriptor, source, photo) rows grouped into one :class:`Enrolment` per person."""
    grouped: dict[str, list[tuple]] = {}
    for name, vector, source, photo in rows:
        grouped.setdefault(name, []).append((np.frombuffer(vector, np.float32) if isinstance(vector, bytes)
                                             else np.asarray(vector, np.float32), source, photo))
    return {name: Enrolment(np.stack([row[0] for row in faces]).reshape(-1, dim), [row[1] for row in faces],
                            [row[2] for row in faces]) for name, faces in grouped.items()}


def _translated(method: Callable[..., _Result]) -> Callable[..., _Result]:
    """SQLite's errors as one-line GalleryErrors naming the file (a damaged file, a locked one)."""

    @functools.wraps(method)
    def translated(self: SQLiteGallery, *args: Any, **kwargs: Any) -> _Result:
        with self._sqlite_errors():
            return method(self, *args, **kwargs)

    return translated


class SQLiteGallery:
    """A gallery in one SQLite file (or ``":memory:"``).

    Args:
        path: the gallery file.
        embedder: the model whose descriptors it holds (checked against the file's record).
        mode: "r" (read only: changes are refused), "w" (read and change an existing gallery)
            or "c" (as "w"; a missing file is created when the first change commits). In every
            mode an existing file must be a slimvision gallery: an empty file, another SQLite
            database or anything else is refused, never turned into a gallery.
    """

    def __init__(self, path: str | Path, embedder: EmbedderInfo, mode: str = "c") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if embedder is ANY_EMBEDDER and mode == "c":
            raise ValueError("ANY_EMBEDDER opens existing galleries only (mode 'r' or 'w')")
        self.path, self.mode, self.embedder = str(path), mode, embedder
        self.connection: sqlite3.Connection | None = None  # None: a new gallery not created yet, or a reader
        self._brief = False  # a reader: one connection per call, so nothing is left open (see _reading)
        self._current_schema = False  # the faces table has the duplicate-detection columns
        with self._sqlite_errors():
            if self.path == ":memory:":
                self.connection = _connect(self.path)
                with _Transaction(self.connection) as cursor:
                    _create_schema(cursor, embedder)
                self._current_schema = True
            elif self._existing_file():
                self._open_existing()

    @contextlib.contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.ProgrammingError:
            raise  # our own misuse of the API: a bug to see with its traceback, not the user's file
        except sqlite3.DatabaseError as error:
            raise GalleryError(_sqlite_problem(error), self.path) from None

    def _existing_file(self) -> bool:
        """True for a file that starts like an SQLite database; False for a missing one in mode "c"."""
        file = Path(self.path)
        try:
            if not file.is_file():
                if file.exists():
                    raise GalleryError("is not a file", self.path)
                if self.mode == "c":
                    return False
                raise GalleryError("no such gallery (make one with 'slimvision faces enroll')", self.path)
            with open(file, "rb") as handle:
                header = handle.read(len(SQLITE_HEADER))
        except OSError as error:
            raise GalleryError(f"cannot read the gallery ({error.strerror or error})", self.path) from None
        if not header:
            raise GalleryError("is an empty file, not a gallery (name a file that does not exist to create one)",
                               self.path)
        if header != SQLITE_HEADER:
            raise GalleryError("is not a slimvision gallery (not an SQLite database); refusing to use it", self.path)
        return True

    def _open_existing(self) -> None:
        self.connection = _connect(self.path)
        try:
            self.embedder = self._read_record(self.embedder)
            self._warn_if_shared()  # only once it is known to be a gallery
            if self.mode != "r":
                self.connection.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
                return
        except BaseException:
            self.connection.close()
            self.connection = None
            raise
        self.connection.close()
        self.connection, self._brief = None, True

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection | None]:
        """The connection to read with: the writer's own, or (None) none before a new gallery's
        first commit. A reader opens one for each call and closes it at once: SQLite makes -wal
        and -shm files while a connection is open, and a process that exits without closing
        (the CLI leaves by os._exit) would leave them beside the gallery."""
        if not self._brief:
            yield self.connection
            return
        connection = _connect(self.path)
        try:
            yield connection
        finally:
            connection.close()

    def _warn_if_shared(self) -> None:
        """Say so when others may read the gallery (made so by hand, or by an older version): the
        -wal and -shm files SQLite makes take the same permissions. Left as it is: sharing a
        gallery with a group can be deliberate."""
        with contextlib.suppress(OSError):
            permissions = os.stat(self.path).st_mode & 0o777
            if permissions & 0o077:
                logger.warning("%s: other users may read this gallery of faces (mode %03o); 'chmod 600' makes it "
                               "yours only", self.path, permissions)

    def _read_record(self, embedder: EmbedderInfo) -> EmbedderInfo:
        """Check that the file is a gallery of ``embedder``'s descriptors; its stored calibration."""
        tables = {name for (name,) in self.connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        not_ours = GalleryError("is an SQLite database but not a slimvision gallery; refusing to use it", self.path)
        if not {"meta", "people", "faces"} <= tables:
            raise not_ours
        try:
            stored = dict(self.connection.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError:  # a "meta" table of someone else's, without our columns
            raise not_ours from None
        if "schema" not in stored:
            raise not_ours
        if stored["schema"] != str(SCHEMA_VERSION):
            raise GalleryError(f"gallery schema {stored['schema']!r}, this slimvision reads {SCHEMA_VERSION}",
                               self.path)
        embedder = stored_embedder(embedder, stored, self.path)
        mine = (stored.get("embedder.name"), stored.get("embedder.version"), stored.get("embedder.dim"))
        if mine != (embedder.name, embedder.version, str(embedder.dim)):
            raise GalleryError(f"holds descriptors of {mine[0]} v{mine[1]} ({mine[2]}-d); they cannot be compared "
                               f"with {embedder.name} v{embedder.version}: use another gallery file", self.path)
        try:
            int(stored["changes"])
            found = EmbedderInfo(embedder.name, embedder.version, embedder.dim, stored["embedder.metric"],
                                 float(stored["embedder.threshold"]))
        except (KeyError, ValueError, TypeError) as error:
            raise self._damaged(f"its model record is unreadable ({error})") from None
        columns = {row[1] for row in self.connection.execute("PRAGMA table_info(faces)")}
        self._current_schema = {"photo", "vector_digest"} <= columns
        return found

    def _damaged(self, problem: str) -> GalleryError:
        return GalleryError(f"damaged gallery: {problem}", self.path)

    # ------------------------------------------------------------------ changes
    def _write(self, change: Callable[[sqlite3.Cursor], _Result]) -> _Result:
        """Run ``change`` in one transaction, then checkpoint it into the gallery file."""
        if self.mode == "r":
            raise GalleryError("opened read-only: no changes", self.path)
        if self.connection is None:
            return self._create_with(change)
        with _Transaction(self.connection) as cursor:
            if not self._current_schema:
                _add_digest_columns(cursor)
            result = change(cursor)
        self._current_schema = True
        self._checkpoint()
        return result

    def _create_with(self, change: Callable[[sqlite3.Cursor], _Result]) -> _Result:
        """A new gallery: built in a private temporary file beside ``path``, which takes the name
        only once the first change has committed (so a failed first change leaves no file)."""
        target = Path(self.path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(target.parent)   # a killed creator's half-made gallery (dead PID)
            temp = target.parent / temp_name(target)
            descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as error:
            blocker = _first_file_above(target.parent)  # a file where a folder would be made
            reason = f"{blocker} is a file" if blocker is not None else (error.strerror or str(error))
            raise GalleryError(f"cannot create the gallery ({reason})", self.path) from None
        try:
            os.fchmod(descriptor, 0o600)  # whatever the umask: biometric data is the owner's only
            os.close(descriptor)
            connection = _connect(str(temp))
            try:
                with _Transaction(connection) as cursor:
                    _create_schema(cursor, self.embedder)
                    result = change(cursor)
                connection.execute("PRAGMA journal_mode = WAL")  # recorded in the file, kept when renamed
            finally:
                connection.close()
            created = _publish(temp, target)
        finally:
            for leftover in (temp, Path(f"{temp}-journal"), Path(f"{temp}-wal"), Path(f"{temp}-shm")):
                leftover.unlink(missing_ok=True)
        if not created:  # another process created the gallery meanwhile: make the change in theirs
            if not self._existing_file():
                raise GalleryError("cannot be created: the name is taken by something that is not a file "
                                   "(a broken link?)", self.path)
            self._open_existing()
            return self._write(change)
        self.connection = _connect(self.path)
        self._current_schema = True
        return result

    def _checkpoint(self) -> None:
        """Move committed changes from the -wal file into the gallery file and empty the -wal."""
        self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    @_translated
    def add(self, name: str, vectors: np.ndarray, sources: list[str | None] | None = None,
            photos: list[str | None] | None = None) -> int:
        """Add descriptors (N, dim) to ``name`` (created if new); returns how many were added
        (a photo or descriptor the gallery holds already is left out)."""
        duplicates = self.add_people({name: Enrolment(vectors, sources, photos)})
        return int(np.size(vectors) // self.embedder.dim) - len(duplicates)

    @_translated
    def add_people(self, people: dict[str, Enrolment]) -> list[Duplicate]:
        """Add several people's descriptors in one transaction: all of them, or (on any error) none.

        Returns the descriptors left out because the gallery (or this very call) holds their
        photo or an identical descriptor already.
        """
        rows = [(name, _clean_name(name), *self._checked(name, faces)) for name, faces in people.items()]
        if not rows:
            return []  # nothing to commit: above all, no new gallery file
        now = _now()

        def change(cursor: sqlite3.Cursor) -> list[Duplicate]:
            duplicates: list[Duplicate] = []
            added = 0
            created: list[int] = []
            for key, name, vectors, sources, photos in rows:
                person, new = _person_id(cursor, name, now)
                created += [person] if new else []
                for position, (vector, source, photo) in enumerate(zip(vectors, sources, photos)):
                    blob = vector.tobytes()
                    digest = _vector_digest(blob)
                    holder = cursor.execute("SELECT people.name FROM faces JOIN people ON people.id = faces.person "
                                            "WHERE faces.vector_digest = ? OR faces.photo = ? LIMIT 1",
                                            (digest, photo)).fetchone()
                    if holder is not None:
                        duplicates.append(Duplicate(key, position, holder[0]))
                        continue
                    cursor.execute("INSERT INTO faces (person, vector, source, added, photo, vector_digest) "
                                   "VALUES (?, ?, ?, ?, ?, ?)", (person, blob, source, now, photo, digest))
                    added += 1
            # People this call created and gave nothing (all duplicates) are not kept.
            cursor.executemany("DELETE FROM people WHERE id = ? AND NOT EXISTS "
                               "(SELECT 1 FROM faces WHERE faces.person = people.id)", [(p,) for p in created])
            if added:
                _bump(cursor)
            return duplicates

        return self._write(change)

    def _checked(self, name: str, faces: Enrolment) -> tuple[np.ndarray, list, list]:
        return check_enrolment(name, faces, self.embedder.dim)

    @_translated
    def remove(self, name: str) -> int:
        """Remove a person and all their descriptors; returns how many descriptors went."""

        def change(cursor: sqlite3.Cursor) -> int:
            row = cursor.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise GalleryError(f"no person named {name!r}", self.path)
            (count,) = cursor.execute("SELECT COUNT(*) FROM faces WHERE person = ?", row).fetchone()
            cursor.execute("DELETE FROM people WHERE id = ?", row)
            _bump(cursor)
            return count

        return self._write(change)

    @_translated
    def rename(self, old: str, new: str) -> None:
        new = _clean_name(new)

        def change(cursor: sqlite3.Cursor) -> None:
            if cursor.execute("SELECT 1 FROM people WHERE name = ?", (new,)).fetchone():
                raise GalleryError(f"{new!r} is already enrolled", self.path)
            if cursor.execute("UPDATE people SET name = ? WHERE name = ?", (new, old)).rowcount == 0:
                raise GalleryError(f"no person named {old!r}", self.path)
            _bump(cursor)

        self._write(change)

    # ------------------------------------------------------------------ reading
    @_translated
    def people(self) -> list[Person]:
        with self._reading() as connection:
            if connection is None:
                return []
            rows = connection.execute("""SELECT people.id, people.name, COUNT(faces.id), people.added FROM people
                                          LEFT JOIN faces ON faces.person = people.id
                                          GROUP BY people.id ORDER BY people.name""").fetchall()
        for number, name, _, _ in rows:
            if not isinstance(name, str):
                raise self._damaged(f"person {number} has no readable name")
        return [Person(name, count, str(added)) for _, name, count, added in rows]

    @_translated
    def vectors(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """All descriptors (N, dim), the index of each one's person in the name list, the names."""
        with self._reading() as connection:
            if connection is None:
                return np.zeros((0, self.embedder.dim), np.float32), np.zeros(0, np.int64), []
            rows = connection.execute("""SELECT faces.id, people.name, faces.vector FROM faces
                                          JOIN people ON people.id = faces.person ORDER BY faces.id""").fetchall()
        for number, name, blob in rows:
            self._check_face(number, name, blob)
        names = sorted({name for _, name, _ in rows})
        index = {name: position for position, name in enumerate(names)}
        matrix = np.frombuffer(b"".join(blob for _, _, blob in rows), np.float32).reshape(-1, self.embedder.dim)
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            number, name, _ = rows[int(np.argmin(finite))]
            raise self._damaged(f"face {number} of {name!r} holds a descriptor that is not finite (NaN or infinity)")
        owners = np.fromiter((index[name] for _, name, _ in rows), np.int64, count=len(rows))
        return matrix, owners, names

    @_translated
    def export_faces(self) -> dict[str, Enrolment]:
        """Every person's descriptors with their sources and photo digests (``faces gallery migrate``)."""
        with self._reading() as connection:
            if connection is None:
                return {}
            photo = "faces.photo" if self._current_schema else "NULL"
            rows = connection.execute(f"""SELECT faces.id, people.name, faces.vector, faces.source, {photo}
                                           FROM faces JOIN people ON people.id = faces.person
                                           ORDER BY faces.id""").fetchall()
            orphan = connection.execute("""SELECT MIN(faces.id), COUNT(*) FROM faces LEFT JOIN people
                                           ON people.id = faces.person WHERE people.id IS NULL""").fetchone()
        if orphan[1]:  # "every descriptor" would be a lie: say so rather than copy fewer
            raise self._damaged(f"{orphan[1]} face(s) belong to no person (face {orphan[0]} first)")
        for number, name, blob, _, _ in rows:  # a damaged row is one line naming the file, not a traceback
            self._check_face(number, name, blob)
            if not np.isfinite(np.frombuffer(blob, np.float32)).all():
                raise self._damaged(f"face {number} of {name!r} holds a descriptor that is not finite (NaN or "
                                    "infinity)")
        return enrolments([row[1:] for row in rows], self.embedder.dim)

    def _check_face(self, number: int, name: object, blob: object) -> None:
        """A face row's person name is text and its descriptor ``dim`` float32 (else: damaged)."""
        size = 4 * self.embedder.dim
        if not isinstance(name, str):
            raise self._damaged(f"the person of face {number} has no readable name")
        if not isinstance(blob, bytes) or len(blob) != size:
            length = f"{len(blob)}-byte" if isinstance(blob, bytes) else f"a {type(blob).__name__} instead of a"
            raise self._damaged(f"face {number} of {name!r} holds {length} descriptor; "
                                f"{self.embedder.dim} float32 take {size} bytes")

    @_translated
    def find_photos(self, digests: list[str]) -> dict[str, str]:
        """Of these :func:`photo_digest` values, those already enrolled, with whose photo each is."""
        found: dict[str, str] = {}
        with self._reading() as connection:
            if connection is None or not self._current_schema:
                return found
            for start in range(0, len(digests), 500):  # SQLite caps the parameters of one statement
                chunk = list(digests[start:start + 500])
                found.update(connection.execute(
                    f"SELECT faces.photo, people.name FROM faces JOIN people ON people.id = faces.person "
                    f"WHERE faces.photo IN ({', '.join('?' * len(chunk))})", chunk).fetchall())
        return found

    @_translated
    def version(self) -> int:
        """A number that changes with every change, so a searcher knows when to reload."""
        with self._reading() as connection:
            if connection is None:
                return 0
            (value,) = connection.execute("SELECT value FROM meta WHERE key = 'changes'").fetchone() or (None,)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise self._damaged(f"its change counter is {value!r}") from None

    @_translated
    def close(self) -> None:
        """Checkpoint (so the gallery is one file again) and close; closing twice is harmless."""
        if self.connection is None:
            return
        try:
            if self.mode != "r" and self.path != ":memory:":
                self._checkpoint()
        finally:
            self.connection.close()
            self.connection = None

    def __enter__(self) -> SQLiteGallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (a crash before COMMIT leaves
    the file as it was: SQLite's journal undoes the rest when the file is next opened)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sqlite3.Cursor:
        self.connection.execute("BEGIN IMMEDIATE")
        return self.connection.cursor()

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        self.connection.execute("COMMIT" if kind is None else "ROLLBACK")


def _connect(path: str) -> sqlite3.Connection:
    # mode=rw: an existing file only. A plain connect would create an empty database where a
    # file went missing between two calls, and a reader must never create a file.
    target = path if path == ":memory:" else f"{Path(path).absolute().as_uri()}?mode=rw"
    connection = sqlite3.connect(target, isolation_level=None, uri=True)  # transactions are explicit
    connection.execute("PRAGMA foreign_keys = ON")
    return connection


def _create_schema(cursor: sqlite3.Cursor, embedder: EmbedderInfo) -> None:
    # One statement each: executescript() would commit the open transaction first.
    cursor.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    cursor.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, added TEXT NOT NULL)")
    cursor.execute("CREATE TABLE faces (id INTEGER PRIMARY KEY, person INTEGER NOT NULL "
                   "REFERENCES people(id) ON DELETE CASCADE, vector BLOB NOT NULL, source TEXT, "
                   "added TEXT NOT NULL, photo TEXT, vector_digest BLOB)")
    cursor.execute("CREATE INDEX faces_person ON faces(person)")
    _add_digest_indexes(cursor)
    fields = {f"embedder.{key}": str(value) for key, value in asdict(embedder).items()}
    cursor.executemany("INSERT INTO meta VALUES (?, ?)",
                       [("schema", str(SCHEMA_VERSION)), ("changes", "0"), *fields.items()])


def _add_digest_columns(cursor: sqlite3.Cursor) -> None:
    """Bring a gallery made before duplicate detection up to date (in the caller's transaction):
    the columns that identify a photo and a descriptor, filled in for the descriptors it holds."""
    columns = {row[1] for row in cursor.execute("PRAGMA table_info(faces)")}
    if "photo" not in columns:
        cursor.execute("ALTER TABLE faces ADD COLUMN photo TEXT")
    if "vector_digest" not in columns:
        cursor.execute("ALTER TABLE faces ADD COLUMN vector_digest BLOB")
    rows = cursor.execute("SELECT id, vector FROM faces WHERE vector_digest IS NULL").fetchall()
    cursor.executemany("UPDATE faces SET vector_digest = ? WHERE id = ?",
                       [(_vector_digest(bytes(vector)), number) for number, vector in rows])
    _add_digest_indexes(cursor)


def _add_digest_indexes(cursor: sqlite3.Cursor) -> None:
    cursor.execute("CREATE INDEX IF NOT EXISTS faces_photo ON faces(photo)")
    cursor.execute("CREATE INDEX IF NOT EXISTS faces_vector_digest ON faces(vector_digest)")


def _person_id(cursor: sqlite3.Cursor, name: str, now: str) -> tuple[int, bool]:
    """The id of the person called ``name``, enrolled now if new; and whether they are new."""
    created = cursor.execute("INSERT OR IGNORE INTO people (name, added) VALUES (?, ?)", (name, now)).rowcount == 1
    (person,) = cursor.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
    return person, created


def _publish(temp: Path, target: Path) -> bool:
    """Give the finished file the gallery's name, unless another process took the name meanwhile
    (a hard link never replaces a file, where ``os.replace`` would drop the other's gallery)."""
    try:
        os.link(temp, target)
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links: check, then rename (a narrow race remains)
        if target.exists():
            return False
        os.rename(temp, target)
    with contextlib.suppress(OSError):  # make the new name itself durable (best effort: not every OS can)
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return True


def _sqlite_problem(error: sqlite3.DatabaseError) -> str:
    text = str(error)
    if "locked" in text or "busy" in text:
        return f"the gallery is busy: another process is changing it ({text}); try again"
    if isinstance(error, sqlite3.OperationalError) and "malformed" not in text:
        return f"cannot use the gallery ({text})"
    return f"damaged gallery file ({text})"


def _bump(cursor: sqlite3.Cursor) -> None:
    cursor.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'changes'")


def _clean_name(name: str) -> str:
    cleaned = " ".join(str(name).split())
    if not cleaned or len(cleaned) > 200:
        raise GalleryError(f"a person's name must be 1-200 visible characters, got {name!r}")
    return cleaned


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


#: URI scheme -> "module:class" of the store behind it; a plain path is an SQLite file. Imported
#: by name when used, so a gallery file never loads a server database's client.
STORES = {"milvus": "slimvision.inference.face_gallery_milvus:MilvusGallery"}


def open_store(location: str | Path, embedder: EmbedderInfo, mode: str = "c") -> GalleryStore:
    """The store at ``location``: ``SCHEME:...`` for a store in :data:`STORES`, else an SQLite file.

    Example:
        >>> open_store(":memory:", DLIB_RESNET_V1).people()
        []
    """
    text = str(location)
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme not in STORES:
        return SQLiteGallery(location, embedder, mode)
    module, name = STORES[scheme].split(":")
    return getattr(importlib.import_module(module), name)(text, embedder, mode)


class Gallery:
    """Search over a :class:`GalleryStore`, reloading whenever the store changes.

    A store that searches itself (a vector database: it has ``nearest(queries, top_k)``, the best
    descriptor of each of the ``top_k`` nearest people) is asked directly; its results follow the
    same threshold rule.

    ``index="exact"`` scans every descriptor with numpy; ``"faiss"`` builds a FAISS flat index
    (exact too, but multithreaded and lighter on memory traffic for very large galleries).
    """

    def __init__(self, store: GalleryStore, index: str = "exact") -> None:
        if index not in ("exact", "faiss"):
            raise ValueError(f"index must be 'exact' or 'faiss', got {index!r}")
        self.store, self.index_kind = store, index
        self._loaded_version: int | None = None

    @classmethod
    def open(cls, path: str | Path, embedder: EmbedderInfo, index: str = "exact", mode: str = "c") -> Gallery:
        """A gallery opened in ``mode`` ("r", "w" or "c", see :class:`SQLiteGallery`): a file, or a
        store named by a URI whose scheme is in :data:`STORES` (``milvus:///path/faces.db``)."""
        return cls(open_store(path, embedder, mode), index)

    @property
    def embedder(self) -> EmbedderInfo:
        return self.store.embedder

    def add(self, name: str, vectors: np.ndarray, sources: list[str | None] | None = None,
            photos: list[str | None] | None = None) -> int:
        return self.store.add(name, vectors, sources, photos)

    def add_people(self, people: dict[str, Enrolment]) -> list[Duplicate]:
        return self.store.add_people(people)

    def find_photos(self, digests: list[str]) -> dict[str, str]:
        return self.store.find_photos(digests)

    def close(self) -> None:
        """Close the store; a gallery file is one file again afterwards."""
        self.store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def remove(self, name: str) -> int:
        return self.store.remove(name)

    def rename(self, old: str, new: str) -> None:
        self.store.rename(old, new)

    def people(self) -> list[Person]:
        return self.store.people()

    def load(self) -> Gallery:
        """Read (and check) every descriptor now rather than at the first search, so a damaged
        gallery is reported even when nothing is searched; returns the gallery. (A store that
        searches itself is only asked for its version: it keeps its own index.)"""
        if self._searching_store():
            self.store.version()
            return self
        self._load()
        return self

    def _searching_store(self) -> bool:
        return callable(getattr(self.store, "nearest", None))

    def _load(self) -> None:
        version = self.store.version()
        if version == self._loaded_version:
            return
        matrix, self._owners, self._names = self.store.vectors()
        if self.embedder.metric == "cosine":
            matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        self._matrix = np.ascontiguousarray(matrix, np.float32)
        self._squared = (self._matrix ** 2).sum(1)
        self._faiss = None
        if self.index_kind == "faiss" and len(self._matrix):
            import faiss  # optional: pip install faiss-cpu

            self._faiss = faiss.IndexFlatIP(self.embedder.dim) if self.embedder.metric == "cosine" \
                else faiss.IndexFlatL2(self.embedder.dim)
            self._faiss.add(self._matrix)
        self._loaded_version = version

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """(Q, N) distances from each query to every stored descriptor (exact)."""
        self._load()
        queries = self._prepare(queries)
        if self.embedder.metric == "cosine":
            return 1.0 - queries @ self._matrix.T
        squared = (queries ** 2).sum(1)[:, None] - 2 * queries @ self._matrix.T + self._squared[None]
        return np.sqrt(np.maximum(squared, 0))

    def _prepare(self, queries: np.ndarray) -> np.ndarray:
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        if queries.shape[1] != self.embedder.dim:
            raise GalleryError(f"queries have length {queries.shape[1]}; this gallery holds {self.embedder.dim}-d "
                               f"descriptors of {self.embedder.name}")
        if self.embedder.metric == "cosine":
            queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        return queries

    def search(self, query: np.ndarray, top_k: int = 5) -> list[Match]:
        """The ``top_k`` nearest people to one descriptor, nearest first."""
        return self.search_many(np.asarray(query)[None], top_k)[0]

    def search_many(self, queries: np.ndarray, top_k: int = 5) -> list[list[Match]]:
        if self._searching_store():
            found = self.store.nearest(self._prepare(queries), top_k)  # type: ignore[attr-defined]
            threshold = self.embedder.threshold
            return [[Match(name, distance, bool(distance <= threshold)) for name, distance in row] for row in found]
        self._load()
        queries = self._prepare(queries)
        if not len(self._matrix):
            return [[] for _ in queries]
        if self._faiss is not None:
            distances, rows = self._faiss_search(queries, top_k)
            return [self._best_per_person(d, r, top_k) for d, r in zip(distances, rows)]
        return [self._exact(row, top_k) for row in self.distances(queries)]

    def _exact(self, distances: np.ndarray, top_k: int) -> list[Match]:
        """Best per person among the nearest descriptors; a partial sort of a growing candidate
        set (several candidates may be one person's), not a full sort of the gallery."""
        wanted = min(len(distances), max(top_k * 8, 64))
        while True:
            rows = np.argpartition(distances, wanted - 1)[:wanted] if wanted < len(distances) else \
                np.arange(len(distances))
            rows = rows[np.argsort(distances[rows], kind="stable")]
            matches = self._best_per_person(distances[rows], rows, top_k)
            if len(matches) == top_k or wanted == len(distances):
                return matches
            wanted = min(len(distances), wanted * 4)

    def _faiss_search(self, queries: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        # Ask for more neighbours than people wanted: several may be one person's descriptors.
        wanted = min(len(self._matrix), max(top_k * 8, 64))
        scores, rows = self._faiss.search(queries, wanted)
        distances = 1.0 - scores if self.embedder.metric == "cosine" else np.sqrt(np.maximum(scores, 0))
        return distances, rows

    def _best_per_person(self, distances: np.ndarray, rows: np.ndarray, top_k: int) -> list[Match]:
        matches: list[Match] = []
        seen: set[int] = set()
        for distance, row in zip(distances, rows):
            if row < 0:
                break
            owner = int(self._owners[row])
            if owner in seen:
                continue
            seen.add(owner)
            matches.append(Match(self._names[owner], float(distance), bool(distance <= self.embedder.threshold)))
            if len(matches) == top_k:
                break
        return matches

    def identify(self, query: np.ndarray) -> Match | None:
        """The enrolled person this descriptor belongs to, or None ("unknown") if nobody is near enough."""
        best = self.search(query, top_k=1)
        return best[0] if best and best[0].is_match else None
