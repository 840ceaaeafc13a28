"""The face gallery in Milvus: the :class:`~slimvision.inference.face_gallery.GalleryStore` interface
on a vector database, for galleries past one machine (``pip install 'slimvision[scale]'``).

``--gallery milvus:///path/to/faces.db`` is an embedded milvus-lite database (a folder, one
process at a time; tests and small deployments); ``milvus://HOST:19530/COLLECTION`` is a Milvus
server (``COLLECTION`` defaults to ``faces``). The semantics are the SQLite store's: the model's
name, version and length are stored with the gallery and checked on every open, descriptors of
another model are refused, a photo or descriptor is never stored twice, enrol / remove / rename
edit people, and :class:`~slimvision.inference.face_gallery.Gallery` applies the same threshold to
the best descriptor of each person. The search is Milvus's own, grouped by person, with the index
the gallery was created with: IVF_FLAT (``&nlist=``/``&nprobe=``) by default in a milvus-lite
file, HNSW on a server, or another by ``?index=HNSW|IVF_FLAT|FLAT`` (FLAT: exact).

What Milvus guarantees (it has no multi-request transactions): each insert, upsert and delete is
one request, applied whole or not at all and visible to the next read once it returns (milvus-lite:
in this process; a server: read at Session consistency, so to this process's next read, and to
other processes once the server has applied it: Strong would make every read wait for the server's
next time tick, about 200 ms). Every change here is one such request: enrolling
all of a call's people is one insert (one per 10,000 descriptors), a removal one delete, a rename
one upsert of the person's rows under the same primary keys. In milvus-lite a request is in its
write-ahead log when it returns (it survives the process being killed; not fsynced, as milvus-lite
does it); its rows are sealed into an indexed segment once before the next search and at close,
not after each change, so a bulk enrolment is one seal. The change counter (:meth:`version`) is a second request: a
crash between the two leaves the data changed and the counter not, so another process's cached
search may not reload until the next change. Checks done before a write (is the name taken? is
this photo enrolled?) are not isolated from a concurrent writer: run one writer at a time.

Example:
    >>> store = MilvusGallery("milvus:///tmp/faces.db", DLIB_RESNET_V1)     # doctest: +SKIP
    >>> store.add("ada", np.eye(128, dtype=np.float32)[:1])                 # doctest: +SKIP
    1
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from slimvision.inference.face_gallery import (ANY_EMBEDDER, MODES, SCHEMA_VERSION, Duplicate, EmbedderInfo, Enrolment,
                                               GalleryError, Person, _clean_name, _vector_digest, check_enrolment,
                                               enrolments, stored_embedder)

DEFAULT_COLLECTION = "faces"
#: Vector indexes a gallery can be created with (``?index=``). Each is what the engine builds,
#: milvus-lite included (``describe_index`` names it, and its FAISS index is what each search
#: calls). Defaults: HNSW on a server; IVF_FLAT in a milvus-lite file, whose engine builds each
#: segment's index in one background thread: HNSW took 187 s per 100,000-row segment there
#: (IVF_FLAT 11 s), and a segment waiting for its index is searched by brute force (docs/scale.md).
INDEXES = ("HNSW", "IVF_FLAT", "FLAT")
DEFAULT_INDEX = {False: "HNSW", True: "IVF_FLAT"}  # is a milvus-lite file -> index
HNSW = {"M": 16, "efConstruction": 200}
MIN_EF = 128
#: IVF_FLAT: ``nlist`` cells per segment (set at creation, ``&nlist=``), ``nprobe`` of them scanned
#: per search (``&nprobe=``, any open); defaults measured by benchmarks/scale_bench.py.
IVF_NLIST, IVF_NPROBE = 1024, 16
MAX_NAME, MAX_TEXT = 256, 2048
#: Milvus caps a query's result window and a filter's length; work in chunks below both.
CHUNK = 1000
#: Milvus's largest ``limit`` of one search.
MAX_TOP_K = 16384
#: milvus-lite has neither cap, and each of its queries is a pass over every row in Python: the
#: duplicate checks of one enrolment ask in chunks this large (one pass for most calls).
LOCAL_CHUNK = 50_000
#: milvus-lite: unsealed rows are read by a slower Python scan (a duplicate check's filter costs about
#: 10x more per row there than in a sealed segment), so a change also seals first once this many
#: wait: segments of about milvus-lite's own compacted size (its MAX_SEGMENT_ROWS).
SEAL_ROWS = 100_000

# pymilvus talks gRPC, and gRPC's fork handlers run in every child the process later forks (an
# exec'd ffmpeg included); when its threads are busy they log an error into the child's stderr
# instead, which an ffmpeg error parse then reads. Nothing here forks a child that uses gRPC.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

_SERVER = re.compile(r"^(?P<host>[^/:?]+)(:(?P<port>\d{1,5}))?(/(?P<collection>[A-Za-z_][A-Za-z0-9_]*))?$")
_Result = TypeVar("_Result")


class _NoClientClock(logging.Filter):
    """A paged query asks milvus-lite for a server timestamp it does not implement: its in-process
    gRPC server logs the NotImplementedError with a traceback and pymilvus warns that the client's
    clock is used instead. True, harmless for one process, repeated on every paged query: dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        unimplemented = record.exc_info is not None and isinstance(record.exc_info[1], NotImplementedError)
        return "mvccTs" not in record.getMessage() and not unimplemented


def _quiet_paging() -> None:
    for name in ("pymilvus.client.iterator.query_iterator", "grpc._server"):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _NoClientClock) for existing in logger.filters):
            logger.addFilter(_NoClientClock())


@dataclass(frozen=True)
class IndexChoice:
    """The vector index a location asks for: its type (:data:`DEFAULT_INDEX` unless ``asked``: named
    in the location, so an existing gallery with another index is refused rather than searched
    otherwise), IVF_FLAT's cells (``nlist``, at creation) and cells searched (``nprobe``)."""

    kind: str = "HNSW"
    asked: bool = False
    nlist: int = IVF_NLIST
    nprobe: int = IVF_NPROBE

    def build_params(self) -> dict[str, int]:
        return {"HNSW": HNSW, "IVF_FLAT": {"nlist": self.nlist}}.get(self.kind, {})

    def search_params(self, top_k: int) -> dict[str, int]:
        return {"HNSW": {"ef": max(MIN_EF, top_k)}, "IVF_FLAT": {"nprobe": self.nprobe}}.get(self.kind, {})


def _index_choice(query: str, location: str, local: bool) -> IndexChoice:
    """``index=HNSW|IVF_FLAT|FLAT``, ``nlist=N``, ``nprobe=N`` joined by ``&``."""
    options: dict[str, str] = {}
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        key = key.lower()
        good = (key == "index" and value.upper() in INDEXES) or (key in ("nlist", "nprobe") and value.isdigit()
                                                                  and 0 < int(value) <= 65536)
        if not good or key in options:
            raise GalleryError(f"unknown option {part!r} (index={'|'.join(INDEXES)}, nlist=N, nprobe=N)", location)
        options[key] = value
    kind = options.get("index", DEFAULT_INDEX[local]).upper()
    if ("nlist" in options or "nprobe" in options) and kind != "IVF_FLAT":
        raise GalleryError("nlist and nprobe are options of index=IVF_FLAT", location)
    return IndexChoice(kind, "index" in options, int(options.get("nlist", IVF_NLIST)),
                       int(options.get("nprobe", IVF_NPROBE)))


def parse_location(location: str) -> tuple[str, str, bool, IndexChoice]:
    """(client URI, collection, is a local milvus-lite file, index asked for) of a ``milvus:`` location.

    Example:
        >>> parse_location("milvus:///data/faces.db")[:3]
        ('/data/faces.db', 'faces', True)
        >>> parse_location("milvus://db.local:19530/door?index=IVF_FLAT&nprobe=8")
        ('http://db.local:19530', 'door', False, IndexChoice(kind='IVF_FLAT', asked=True, nlist=1024, nprobe=8))
    """
    rest = re.sub(r"^milvus:(//)?", "", location, flags=re.IGNORECASE)  # Path("milvus:///x") -> "milvus:/x"
    rest, _, query = rest.partition("?")
    if rest.startswith("/") or rest.endswith(".db"):
        return rest, DEFAULT_COLLECTION, True, _index_choice(query, location, local=True)
    index = _index_choice(query, location, local=False)
    match = _SERVER.match(rest)
    if match is None:
        raise GalleryError("is not a Milvus location (milvus:///path/faces.db or milvus://HOST:PORT/COLLECTION)",
                           location)
    uri = f"http://{match['host']}:{match['port'] or 19530}"
    return uri, match["collection"] or DEFAULT_COLLECTION, False, index


class MilvusGallery:
    """A gallery in a Milvus collection (with a small ``<collection>_meta`` one for the model record).

    Args:
        location: ``milvus:///path/faces.db`` (milvus-lite) or ``milvus://HOST:PORT/COLLECTION``.
        embedder: the model whose descriptors it holds (checked against the stored record).
        mode: "r", "w" or "c" as for :class:`~slimvision.inference.face_gallery.SQLiteGallery`: a
            missing gallery is created by its first change in mode "c" only.
    """

    def __init__(self, location: str, embedder: EmbedderInfo, mode: str = "c") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if embedder is ANY_EMBEDDER and mode == "c":
            raise ValueError("ANY_EMBEDDER opens existing galleries only (mode 'r' or 'w')")
        self.path, self.mode, self.embedder = location, mode, embedder
        self.uri, self.collection, self.local, self.index = parse_location(location)
        self.meta = f"{self.collection}_meta"
        self.client: Any = None  # None: a new gallery not created yet
        self._unsealed = 0  # milvus-lite: rows changed and not yet sealed into an indexed segment
        #: A server's reads are at Session consistency: this process's own changes are visible to its
        #: next read; Strong (the collection's level) makes every read wait for the server's next time
        #: tick, about 200 ms a search and 400 ms a query on Milvus 2.3 (docs/scale.md). milvus-lite
        #: runs in this process: its reads see every change already.
        self._reads: dict[str, str] = {} if self.local else {"consistency_level": "Session"}
        with self._milvus_errors():
            if self._exists():
                self.embedder = self._read_record(embedder)
            elif mode != "c":
                raise GalleryError("no such gallery (make one with 'slimvision faces enroll')", self.path)

    # ------------------------------------------------------------------ opening
    @contextlib.contextmanager
    def _milvus_errors(self) -> Iterator[None]:
        from pymilvus import MilvusException

        try:
            yield
        except MilvusException as error:
            message = " ".join(str(getattr(error, "message", "") or error).split())
            raise GalleryError(f"Milvus refused: {message}", self.path) from None
        except (ConnectionError, OSError) as error:
            raise GalleryError(f"cannot reach Milvus ({error})", self.path) from None

    def _connect(self) -> Any:
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise GalleryError("a Milvus gallery needs pymilvus: pip install 'slimvision[scale]'", self.path) from None
        if self.local:
            folder = Path(self.uri)
            if folder.exists() and not folder.is_dir():
                raise GalleryError("is a file, not a milvus-lite database (an SQLite gallery? give it as a path)",
                                   self.path)
            folder.parent.mkdir(parents=True, exist_ok=True)
        _quiet_paging()
        return MilvusClient(uri=self.uri)

    def _exists(self) -> bool:
        """Whether the gallery's collections exist (a missing milvus-lite database is not created here)."""
        if self.local:
            if not Path(self.uri).exists():
                return False
            if not Path(self.uri).is_dir():
                raise GalleryError("is a file, not a milvus-lite database (an SQLite gallery? give it as a path)",
                                   self.path)
            if not {entry.name for entry in Path(self.uri).iterdir()} & {"LOCK", "collections", "databases"}:
                raise GalleryError("is a folder but not a milvus-lite database; refusing to use it", self.path)
        self.client = self._connect()
        names = set(self.client.list_collections())
        if self.collection not in names:
            return False
        if self.meta not in names:
            raise GalleryError(f"collection {self.collection!r} is not a slimvision gallery (no {self.meta!r}); "
                               "refusing to use it", self.path)
        self.client.load_collection(self.collection)
        self.client.load_collection(self.meta)
        self._adopt_index()
        # Rows a killed process left in milvus-lite's log: sealed at the first search (a reader leaves them).
        self._unsealed = int(self.local and self.mode != "r")
        return True

    def _adopt_index(self) -> None:
        """Search with the index the gallery was created with; a location naming another is refused."""
        stored = str((self.client.describe_index(self.collection, "vector") or {}).get("index_type", "")).upper()
        if self.index.asked and stored != self.index.kind:
            raise GalleryError(f"its index is {stored or 'none'}, set when it was created; index={self.index.kind} "
                               "applies to a new gallery only (copy it with 'slimvision faces gallery migrate')",
                               self.path)
        self.index = replace(self.index, kind=stored)

    def _record(self) -> dict[str, str]:
        rows = self.client.query(self.meta, filter='key != ""', output_fields=["key", "value"], limit=100,
                                 **self._reads)
        return {row["key"]: row["value"] for row in rows}

    def _read_record(self, embedder: EmbedderInfo) -> EmbedderInfo:
        stored = self._record()
        if stored.get("schema") != str(SCHEMA_VERSION):
            raise GalleryError(f"gallery schema {stored.get('schema')!r}, this slimvision reads {SCHEMA_VERSION}",
                               self.path)
        embedder = stored_embedder(embedder, stored, self.path)
        mine = (stored.get("embedder.name"), stored.get("embedder.version"), stored.get("embedder.dim"))
        if mine != (embedder.name, embedder.version, str(embedder.dim)):
            raise GalleryError(f"holds descriptors of {mine[0]} v{mine[1]} ({mine[2]}-d); they cannot be compared "
                               f"with {embedder.name} v{embedder.version}: use another gallery", self.path)
        try:
            return EmbedderInfo(embedder.name, embedder.version, embedder.dim, stored["embedder.metric"],
                                float(stored["embedder.threshold"]))
        except (KeyError, ValueError) as error:
            raise GalleryError(f"damaged gallery: its model record is unreadable ({error})", self.path) from None

    def _create(self) -> None:
        """The faces collection (descriptor, person, source, photo, descriptor digest, date) and the record."""
        from pymilvus import DataType, MilvusClient

        self.client = self.client or self._connect()
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.embedder.dim)
        for name, length in (("person", MAX_NAME), ("source", MAX_TEXT), ("photo", 80), ("digest", 40),
                             ("added", 32)):
            schema.add_field(name, DataType.VARCHAR, max_length=length)
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type=self.index.kind, metric_type=self._metric(),
                        params=self.index.build_params())
        scalar = self._scalar_index()
        for field in ("person", "photo", "digest"):  # every edit and duplicate check filters on these
            index.add_index(field, index_type=scalar)
        self.client.create_collection(self.collection, schema=schema, index_params=index,
                                      consistency_level="Strong")
        meta = MilvusClient.create_schema(auto_id=False)
        meta.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
        meta.add_field("value", DataType.VARCHAR, max_length=256)
        meta.add_field("unused", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs a vector field in every collection
        meta_index = self.client.prepare_index_params()
        meta_index.add_index("unused", index_type="FLAT", metric_type="L2")
        self.client.create_collection(self.meta, schema=meta, index_params=meta_index, consistency_level="Strong")
        record = {"schema": str(SCHEMA_VERSION), "changes": "0",
                  **{f"embedder.{key}": str(getattr(self.embedder, key))
                     for key in ("name", "version", "dim", "metric", "threshold")}}
        self.client.insert(self.meta, [{"key": key, "value": value, "unused": [0.0, 0.0]}
                                       for key, value in record.items()])

    def _scalar_index(self) -> str:
        """INVERTED, or Trie on a Milvus server before 2.4 (which has no INVERTED index and refuses it)."""
        if self.local:
            return "INVERTED"
        version = re.match(r"v?(\d+)\.(\d+)", str(self.client.get_server_version()))
        return "Trie" if version and (int(version[1]), int(version[2])) < (2, 4) else "INVERTED"

    def _metric(self) -> str:
        return "COSINE" if self.embedder.metric == "cosine" else "L2"

    # ------------------------------------------------------------------ changes
    def _write(self, change: Callable[[], _Result]) -> _Result:
        if self.mode == "r":
            raise GalleryError("opened read-only: no changes", self.path)
        with self._milvus_errors():
            if self.client is None or self.collection not in self.client.list_collections():
                self._create()
            return change()

    def _bump(self, rows: int) -> None:
        """Count the change of ``rows`` rows (and, in milvus-lite, that they are not sealed yet)."""
        changes = int(self._record().get("changes", "0")) + 1
        self.client.upsert(self.meta, [{"key": "changes", "value": str(changes), "unused": [0.0, 0.0]}])
        if self.local:
            self._unsealed += max(rows, 1)

    def _seal(self, waiting: int = 1) -> None:
        """milvus-lite: seal the changes made since the last seal into indexed segments, once, before
        the next search (and at close; before a change once ``waiting`` rows wait). Unsealed rows are
        searched by a Python scan (1.3 s per query at 100,000 rows, against 60 ms sealed); sealing
        after every change instead made each change a new segment, which every later duplicate check
        and search then visits. (Unsealed changes are in milvus-lite's write-ahead log already:
        sealing is for speed, not safety.) A server seals and indexes by itself."""
        if self._unsealed and self._unsealed >= waiting:
            self.client.flush(self.collection)
            self._unsealed = 0

    def add(self, name: str, vectors: np.ndarray, sources: list[str | None] | None = None,
            photos: list[str | None] | None = None) -> int:
        """Add descriptors (N, dim) to ``name``; how many were added (duplicates left out)."""
        duplicates = self.add_people({name: Enrolment(vectors, sources, photos)})
        return int(np.size(vectors) // self.embedder.dim) - len(duplicates)

    def add_people(self, people: dict[str, Enrolment]) -> list[Duplicate]:
        """Several people's descriptors in one insert request; duplicates (a photo or descriptor
        the gallery, or this call, holds already) are returned and left out."""
        rows = [(key, _clean_name(key), *check_enrolment(key, faces, self.embedder.dim))
                for key, faces in people.items()]
        if not rows:
            return []

        def change() -> list[Duplicate]:
            self._seal(waiting=SEAL_ROWS)
            holders = self._holders(rows)
            duplicates, records = self._new_records(rows, holders)
            if records:
                for start in range(0, len(records), 10 * CHUNK):  # one request below Milvus's message cap
                    self.client.insert(self.collection, records[start:start + 10 * CHUNK])
                self._bump(len(records))
            return duplicates

        return self._write(change)

    def _holders(self, rows: list[tuple]) -> dict[str, str]:
        """Digest or photo -> the person already holding it, for every descriptor about to be added."""
        digests = [_vector_digest(vector.tobytes()).hex() for _, _, vectors, _, _ in rows for vector in vectors]
        photos = [photo for *_, photos in rows for photo in photos if photo]
        found: dict[str, str] = {}
        step = LOCAL_CHUNK if self.local else CHUNK
        for field, values in (("digest", digests), ("photo", photos)):
            for start in range(0, len(values), step):
                chunk = values[start:start + step]  # a digest or photo is held by one row at most
                for row in self._query(f"{field} in {json.dumps(chunk)}", [field, "person"],
                                       limit=None if self.local else len(chunk)):
                    found[row[field]] = row["person"]
        return found

    def _new_records(self, rows: list[tuple], holders: dict[str, str]) -> tuple[list[Duplicate], list[dict]]:
        duplicates: list[Duplicate] = []
        records: list[dict[str, Any]] = []
        now, base = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.time_ns()
        for key, name, vectors, sources, photos in rows:
            for position, (vector, source, photo) in enumerate(zip(vectors, sources, photos)):
                digest = _vector_digest(vector.tobytes()).hex()
                holder = holders.get(digest) or (holders.get(photo) if photo else None)
                if holder is not None:
                    duplicates.append(Duplicate(key, position, holder))
                    continue
                holders[digest] = name  # a later descriptor of this call is a duplicate of this one
                if photo:
                    holders[photo] = name
                # Primary keys from the clock: increasing, so the gallery keeps the order of enrolment.
                records.append({"id": base + len(records), "vector": vector.tolist(), "person": name,
                                "source": (source or "")[:MAX_TEXT], "photo": photo or "", "digest": digest,
                                "added": now})
        return duplicates, records

    def remove(self, name: str) -> int:
        """Remove a person and all their descriptors (one delete request); how many went."""

        def change() -> int:
            count = len(self._query(f"person == {json.dumps(name)}", ["id"]))
            if not count:
                raise GalleryError(f"no person named {name!r}", self.path)
            self.client.delete(self.collection, filter=f"person == {json.dumps(name)}")
            self._bump(count)
            return count

        return self._write(change)

    def rename(self, old: str, new: str) -> None:
        """Give a person another name: their rows upserted under the same keys (one request)."""
        new = _clean_name(new)

        def change() -> None:
            if self._query(f"person == {json.dumps(new)}", ["id"], limit=1):
                raise GalleryError(f"{new!r} is already enrolled", self.path)
            rows = self._query(f"person == {json.dumps(old)}", ["*"])
            if not rows:
                raise GalleryError(f"no person named {old!r}", self.path)
            self.client.upsert(self.collection, [{**row, "person": new,
                                                  "vector": [float(v) for v in row["vector"]]} for row in rows])
            self._bump(len(rows))

        self._write(change)

    # ------------------------------------------------------------------ reading
    def _ready(self) -> bool:
        return self.client is not None and self.collection in self.client.list_collections()

    def _query(self, expression: str, fields: list[str], limit: int | None = None) -> list[dict[str, Any]]:
        """Every row matching ``expression`` (paged: Milvus caps one query's window)."""
        if limit is not None:
            return list(self.client.query(self.collection, filter=expression, output_fields=fields, limit=limit,
                                          **self._reads))
        iterator = self.client.query_iterator(self.collection, batch_size=CHUNK, filter=expression,
                                              output_fields=fields, **self._reads)
        rows: list[dict[str, Any]] = []
        try:
            while batch := iterator.next():
                rows.extend(batch)
        finally:
            iterator.close()
        return rows

    def people(self) -> list[Person]:
        with self._milvus_errors():
            if not self._ready():
                return []
            rows = self._query('person != ""', ["person", "added"])
        people: dict[str, list[str]] = {}
        for row in rows:
            people.setdefault(row["person"], []).append(row["added"])
        return [Person(name, len(dates), min(dates)) for name, dates in sorted(people.items())]

    def _all_faces(self) -> list[dict[str, Any]]:
        with self._milvus_errors():
            if not self._ready():
                return []
            rows = self._query('person != ""', ["id", "person", "vector", "source", "photo"])
        return sorted(rows, key=lambda row: row["id"])

    def vectors(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """All descriptors (N, dim), each one's person index into the sorted names, the names."""
        rows = self._all_faces()
        names = sorted({row["person"] for row in rows})
        index = {name: position for position, name in enumerate(names)}
        matrix = np.array([row["vector"] for row in rows], np.float32).reshape(-1, self.embedder.dim)
        owners = np.fromiter((index[row["person"]] for row in rows), np.int64, count=len(rows))
        return matrix, owners, names

    def export_faces(self) -> dict[str, Enrolment]:
        """Every person's descriptors with their sources and photo digests (``faces gallery migrate``)."""
        rows = [(row["person"], row["vector"], row["source"] or None, row["photo"] or None)
                for row in self._all_faces()]
        return enrolments(rows, self.embedder.dim)

    def find_photos(self, digests: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._milvus_errors():
            if not self._ready():
                return found
            for start in range(0, len(digests), CHUNK):
                chunk = [digest for digest in digests[start:start + CHUNK] if digest]
                if chunk:
                    found.update((row["photo"], row["person"]) for row in self._query(
                        f"photo in {json.dumps(chunk)}", ["photo", "person"], limit=None if self.local else len(chunk)))
        return found

    def nearest(self, queries: np.ndarray, top_k: int) -> list[list[tuple[str, float]]]:
        """For each query (Q, dim), the ``top_k`` nearest people as (name, distance), nearest first:
        each person's best descriptor (Milvus groups the hits by person)."""
        with self._milvus_errors():
            if not self._ready() or not len(queries):
                return [[] for _ in queries]
            self._seal()
            data = np.asarray(queries, np.float32).tolist()
            found: list[list[tuple[str, float]]] = [[] for _ in data]
            todo, limit = list(range(len(data))), min(top_k, MAX_TOP_K)
            answered = [0] * len(data)  # hits in each query's last answer
            while todo:
                hits = self.client.search(self.collection, data=[data[i] for i in todo], limit=limit,
                                          anns_field="vector", output_fields=["person"], group_by_field="person",
                                          search_params={"metric_type": self._metric(),
                                                         "params": self.index.search_params(limit)}, **self._reads)
                again = []
                for position, row in zip(todo, hits):
                    found[position] = self._best_per_person(row, top_k)
                    if len(found[position]) < top_k and len(row) > answered[position] and limit < MAX_TOP_K:
                        again.append(position)  # fewer people than asked, and a larger answer may hold more
                    answered[position] = len(row)
                todo, limit = again, min(limit * 8, MAX_TOP_K)
        return found

    def _best_per_person(self, row: list[dict[str, Any]], top_k: int) -> list[tuple[str, float]]:
        """The first (nearest) hit of each person, ``top_k`` of them. Grouped by person, a search
        should return one hit per person already, but Milvus 2.3 ignores ``group_by_field`` (it
        returns descriptors, several of a person), and milvus-lite 3.2.2 groups only the nearest
        ``limit`` descriptors (fewer people than asked when a person has many): :meth:`nearest` asks
        again for 8x as many while an answer holds fewer than ``top_k`` people and grew."""
        best: dict[str, float] = {}
        for hit in row:
            name = hit["entity"]["person"]
            if name not in best:
                best[name] = self._distance(hit["distance"])
                if len(best) == top_k:
                    break
        return list(best.items())

    def _distance(self, score: float) -> float:
        """Milvus's score in the embedder's metric: L2 is squared there; COSINE is a similarity."""
        return 1.0 - float(score) if self.embedder.metric == "cosine" else float(np.sqrt(max(float(score), 0.0)))

    def version(self) -> int:
        with self._milvus_errors():
            if not self._ready():
                return 0
            value = self._record().get("changes")
        try:
            return int(value or 0)
        except ValueError:
            raise GalleryError(f"damaged gallery: its change counter is {value!r}", self.path) from None

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):  # else the next process seals them at its first search
                self._seal()
            with contextlib.suppress(Exception):  # closing twice, or a connection already gone
                self.client.close()
            self.client = None

    def __enter__(self) -> MilvusGallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
