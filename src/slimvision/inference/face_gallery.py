"""The gallery of enrolled people: their face descriptors, stored, searched and edited safely.

A gallery belongs to one embedding model. Descriptors of different models live in different
spaces, so the model's name, version, length and metric are written into the gallery when it
is created, and opening it with another model is refused.

:class:`GalleryStore` is the storage interface; :class:`SQLiteGallery` is the default store:
one file; descriptors are float32 blobs; every change is one transaction, so a crash in the
middle of an enrolment leaves the gallery as it was. A server database can implement the
same interface. :class:`Gallery` adds search on top of a store: exact search with numpy, or a
FAISS index (``pip install faiss-cpu``) for galleries too large to scan. Matches are per person:
a person's best descriptor counts.

Example:
    >>> import numpy as np
    >>> gallery = Gallery.open(":memory:", DLIB_RESNET_V1)
    >>> gallery.add("ada", np.eye(128, dtype=np.float32)[:1])
    1
    >>> [(match.name, round(match.distance, 3)) for match in gallery.search(np.eye(128)[0], top_k=1)]
    [('ada', 0.0)]
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from slimvision.errors import SlimvisionError

SCHEMA_VERSION = 1
METRICS = ("euclidean", "cosine")


class GalleryError(SlimvisionError):
    """A gallery cannot be used as asked (wrong model, unknown person, name taken, damaged file)."""


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


class GalleryStore(Protocol):
    """Where descriptors live. Every method is atomic: it happens completely or not at all."""

    embedder: EmbedderInfo

    def add(self, name: str, vectors: np.ndarray, sources: list[str] | None = None) -> int: ...
    def add_people(self, people: dict[str, tuple[np.ndarray, list[str] | None]]) -> int: ...
    def remove(self, name: str) -> int: ...
    def rename(self, old: str, new: str) -> None: ...
    def people(self) -> list[Person]: ...
    def vectors(self) -> tuple[np.ndarray, np.ndarray, list[str]]: ...
    def version(self) -> int: ...


class SQLiteGallery:
    """A gallery in one SQLite file (or ``":memory:"``)."""

    def __init__(self, path: str | Path, embedder: EmbedderInfo) -> None:
        self.path = str(path)
        try:
            self.connection = sqlite3.connect(self.path, isolation_level=None)  # transactions are explicit
            self.connection.execute("PRAGMA foreign_keys = ON")
            if self.path != ":memory:":
                self.connection.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
            self.embedder = self._check_or_create(embedder)
        except sqlite3.DatabaseError as error:
            raise GalleryError(f"{self.path}: not a usable gallery ({error})") from None

    def _check_or_create(self, embedder: EmbedderInfo) -> EmbedderInfo:
        with self._transaction() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            stored = dict(cursor.execute("SELECT key, value FROM meta").fetchall())
            if not stored:
                # One statement each: executescript() would commit the open transaction first.
                cursor.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, "
                               "added TEXT NOT NULL)")
                cursor.execute("CREATE TABLE faces (id INTEGER PRIMARY KEY, person INTEGER NOT NULL "
                               "REFERENCES people(id) ON DELETE CASCADE, vector BLOB NOT NULL, source TEXT, "
                               "added TEXT NOT NULL)")
                cursor.execute("CREATE INDEX faces_person ON faces(person)")
                fields = {f"embedder.{key}": str(value) for key, value in asdict(embedder).items()}
                cursor.executemany("INSERT INTO meta VALUES (?, ?)",
                                   [("schema", str(SCHEMA_VERSION)), ("changes", "0"), *fields.items()])
                return embedder
        if stored.get("schema") != str(SCHEMA_VERSION):
            raise GalleryError(f"{self.path}: gallery schema {stored.get('schema')!r}, this slimvision reads {SCHEMA_VERSION}")
        mine = (stored.get("embedder.name"), stored.get("embedder.version"), stored.get("embedder.dim"))
        if mine != (embedder.name, embedder.version, str(embedder.dim)):
            raise GalleryError(f"{self.path}: holds descriptors of {mine[0]} v{mine[1]} ({mine[2]}-d); they cannot be "
                               f"compared with {embedder.name} v{embedder.version}: use another gallery file")
        return EmbedderInfo(embedder.name, embedder.version, embedder.dim, stored["embedder.metric"],
                            float(stored["embedder.threshold"]))

    def _transaction(self) -> _Transaction:
        return _Transaction(self.connection)

    def add(self, name: str, vectors: np.ndarray, sources: list[str] | None = None) -> int:
        """Add descriptors (N, dim) to ``name`` (created if new); returns how many were added."""
        return self.add_people({name: (vectors, sources)})

    def add_people(self, people: dict[str, tuple[np.ndarray, list[str] | None]]) -> int:
        """Add several people's descriptors in one transaction: all of them, or (on any error) none."""
        rows = {_clean_name(name): self._checked(name, vectors, sources) for name, (vectors, sources) in people.items()}
        now = _now()
        with self._transaction() as cursor:
            for name, (vectors, sources) in rows.items():
                cursor.execute("INSERT OR IGNORE INTO people (name, added) VALUES (?, ?)", (name, now))
                (person,) = cursor.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
                cursor.executemany("INSERT INTO faces (person, vector, source, added) VALUES (?, ?, ?, ?)",
                                   [(person, vector.tobytes(), source, now) for vector, source in zip(vectors, sources)])
            _bump(cursor)
        return sum(len(vectors) for vectors, _ in rows.values())

    def _checked(self, name: str, vectors: np.ndarray, sources: list[str] | None) -> tuple[np.ndarray, list]:
        vectors = np.ascontiguousarray(vectors, np.float32).reshape(-1, self.embedder.dim) \
            if np.size(vectors) % self.embedder.dim == 0 else None
        if vectors is None or not len(vectors) or not np.isfinite(vectors).all():
            raise GalleryError(f"add {name!r}: expected finite descriptors of length {self.embedder.dim}")
        sources = list(sources) if sources is not None else [None] * len(vectors)
        if len(sources) != len(vectors):
            raise GalleryError(f"add {name!r}: {len(vectors)} descriptors but {len(sources)} sources")
        return vectors, sources

    def remove(self, name: str) -> int:
        """Remove a person and all their descriptors; returns how many descriptors went."""
        with self._transaction() as cursor:
            row = cursor.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise GalleryError(f"{self.path}: no person named {name!r}")
            (count,) = cursor.execute("SELECT COUNT(*) FROM faces WHERE person = ?", row).fetchone()
            cursor.execute("DELETE FROM people WHERE id = ?", row)
            _bump(cursor)
        return count

    def rename(self, old: str, new: str) -> None:
        new = _clean_name(new)
        with self._transaction() as cursor:
            if cursor.execute("SELECT 1 FROM people WHERE name = ?", (new,)).fetchone():
                raise GalleryError(f"{self.path}: {new!r} is already enrolled")
            if cursor.execute("UPDATE people SET name = ? WHERE name = ?", (new, old)).rowcount == 0:
                raise GalleryError(f"{self.path}: no person named {old!r}")
            _bump(cursor)

    def people(self) -> list[Person]:
        rows = self.connection.execute("""SELECT people.name, COUNT(faces.id), people.added FROM people
                                          LEFT JOIN faces ON faces.person = people.id
                                          GROUP BY people.id ORDER BY people.name""").fetchall()
        return [Person(*row) for row in rows]

    def vectors(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """All descriptors (N, dim), the index of each one's person in the name list, the names."""
        rows = self.connection.execute("""SELECT people.name, faces.vector FROM faces
                                          JOIN people ON people.id = faces.person ORDER BY faces.id""").fetchall()
        names = sorted({name for name, _ in rows})
        index = {name: position for position, name in enumerate(names)}
        matrix = np.frombuffer(b"".join(blob for _, blob in rows), np.float32).reshape(-1, self.embedder.dim)
        owners = np.fromiter((index[name] for name, _ in rows), np.int64, count=len(rows))
        return matrix, owners, names

    def version(self) -> int:
        """A number that changes with every change, so a searcher knows when to reload."""
        return int(self.connection.execute("SELECT value FROM meta WHERE key = 'changes'").fetchone()[0])

    def close(self) -> None:
        self.connection.close()


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


def _bump(cursor: sqlite3.Cursor) -> None:
    cursor.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'changes'")


def _clean_name(name: str) -> str:
    cleaned = " ".join(str(name).split())
    if not cleaned or len(cleaned) > 200:
        raise GalleryError(f"a person's name must be 1-200 visible characters, got {name!r}")
    return cleaned


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Gallery:
    """Search over a :class:`GalleryStore`, reloading whenever the store changes.

    ``index="exact"`` scans every descriptor with numpy; ``"faiss"`` builds a FAISS flat index
    (exact too, but multithreaded and lighter on memory traffic for very large galleries).
    """

    def __init__(self, store: GalleryStore, index: str = "exact") -> None:
        if index not in ("exact", "faiss"):
            raise ValueError(f"index must be 'exact' or 'faiss', got {index!r}")
        self.store, self.index_kind = store, index
        self._loaded_version: int | None = None

    @classmethod
    def open(cls, path: str | Path, embedder: EmbedderInfo, index: str = "exact") -> Gallery:
        return cls(SQLiteGallery(path, embedder), index)

    @property
    def embedder(self) -> EmbedderInfo:
        return self.store.embedder

    def add(self, name: str, vectors: np.ndarray, sources: list[str] | None = None) -> int:
        return self.store.add(name, vectors, sources)

    def add_people(self, people: dict[str, tuple[np.ndarray, list[str] | None]]) -> int:
        return self.store.add_people(people)

    def remove(self, name: str) -> int:
        return self.store.remove(name)

    def rename(self, old: str, new: str) -> None:
        self.store.rename(old, new)

    def people(self) -> list[Person]:
        return self.store.people()

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
