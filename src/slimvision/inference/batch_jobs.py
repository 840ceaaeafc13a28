"""The one code path of ``slimvision batch``: sources in, outputs and a manifest out, on any engine.

A batch job reads its inputs from a folder, a glob or a Parquet/CSV list of paths
(:func:`read_sources`), maps each to an output under the destination folder (:func:`plan_jobs`),
and keeps a manifest there (:class:`Manifest`): one row per input with its output, status
("done" or "failed") and error. Whatever engine runs the jobs (the local worker pool here, Ray
Data actors in :mod:`slimvision.inference.batch_ray`), every job goes through :func:`run_job`:
run the task, write the output atomically, return the row. The driver alone appends rows to
the manifest, so a rerun skips what it marks done and redoes the rest. A bad file is a row
with its error, never the end of the job.

Example:
    >>> from slimvision.inference.batch_tasks import TaskSpec              # doctest: +SKIP
    >>> spec = TaskSpec("vae-denoise")                                    # doctest: +SKIP
    >>> summary = run_batch(spec, "scans/", "restored/", workers=2)      # doctest: +SKIP
    >>> summary.done, summary.failed                                     # doctest: +SKIP
    (40, 0)
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slimvision.errors import InputError, OutputError, SlimvisionError
from slimvision.inference.batch import available_cpus, map_in_order
from slimvision.inference.batch_tasks import OPTIONS, Task, TaskSpec, build_task, face_model, output_suffix
from slimvision.io.atomic import check_outside_inputs, plan_outputs, remove_stale_temps, write_bytes_atomic, \
    write_text_atomic
from slimvision.io.images import IMAGE_SUFFIXES, find_files, find_images

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
#: Manifest rows are synced to disk in groups of at most this many rows or seconds.
SYNC_ROWS, SYNC_SECONDS = 64, 1.0
DONE, FAILED = "done", "failed"
#: Columns a Parquet/CSV list may name its paths by (else: its only column).
PATH_COLUMNS = ("path", "input", "source", "file")


@dataclass(frozen=True)
class Job:
    """One input and its output, as strings: a row that Ray Data (Arrow) and JSON carry as is."""

    source: str
    output: str


@dataclass(frozen=True)
class Row:
    """What became of one job: the manifest's row."""

    input: str
    output: str
    status: str  # DONE or FAILED
    error: str = ""  # the one-line reason for FAILED
    seconds: float = 0.0  # task time (load, run, encode; the write not counted)


@dataclass
class Summary:
    """A finished (or stopped) batch: counts, the failures, and the wall-clock time."""

    done: int = 0
    skipped: int = 0
    failed: list[Row] = field(default_factory=list)
    seconds: float = 0.0
    engine: str = "local"
    workers: int = 1

    def as_dict(self) -> dict[str, object]:
        return {"done": self.done, "skipped": self.skipped, "failed": [asdict(row) for row in self.failed],
                "seconds": round(self.seconds, 3), "engine": self.engine, "workers": self.workers,
                "images_per_second": round(self.done / self.seconds, 3) if self.seconds > 0 else None}


# --------------------------------------------------------------------------- sources
#: What a batch reads: a folder, a glob pattern or a .parquet/.csv list file, or (from Python) the
#: input paths themselves.
Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
#: How a Python list of inputs is named in errors and in the manifest's job checks.
PATH_LIST = "the list of input paths"


def _is_named(source: Source) -> bool:
    """True for a folder, pattern or list file given by name; False for a sequence of paths."""
    return isinstance(source, (str, os.PathLike))


def read_sources(source: Source, recursive: bool = False, medical: bool = False) -> tuple[list[Path], Path]:
    """The input files named by ``source`` and the folder their outputs are named relative to.

    ``source`` is a folder (its images, or with ``medical`` its single-slice medical files: images
    and DICOM; sub-folders with ``recursive``), a glob pattern
    (``"photos/**/*.jpg"``; ``**`` always recurses), a ``.parquet`` / ``.csv`` list of paths
    (column ``path``, ``input``, ``source`` or ``file``, or its only column; relative paths are
    taken from the list's folder), or from Python a sequence of paths (relative ones from the
    working directory). Raises InputError naming the source when it yields nothing.

    Example:
        >>> read_sources([])
        Traceback (most recent call last):
        slimvision.errors.InputError: the list of input paths: lists no paths
    """
    if not _is_named(source):
        files = _unique_paths([(str(name), Path(name)) for name in source], PATH_LIST)  # type: ignore[union-attr]
        return files, _common_folder(files)
    text = str(source)
    path = Path(text)
    if path.is_dir():
        files = _medical_files(path, recursive) if medical else find_images(path, recursive=recursive)
        if not files:
            kinds = ", ".join(sorted(IMAGE_SUFFIXES)) + (", DICOM" if medical else "")
            raise InputError(path, f"folder holds no images ({kinds})")
        return files, path
    if path.suffix.lower() in (".parquet", ".csv") and path.is_file():
        files = _listed_paths(path)
    elif glob.has_magic(text):
        files = sorted(Path(name) for name in glob.glob(text, recursive=True) if Path(name).is_file())
        if not files:
            raise InputError(text, "the pattern matches no files")
    elif path.exists():
        raise InputError(path, "is neither a folder, a glob pattern nor a .parquet/.csv list of paths")
    else:
        raise InputError(path, "not found")
    return files, _common_folder(files)


def _medical_files(folder: Path, recursive: bool) -> list[Path]:
    """A folder's images and DICOM files (a suffix-less DICOM too), hidden ones skipped, sorted."""
    from slimvision.io.medical import medical_kind

    return find_files(folder, lambda path: path.suffix.lower() in IMAGE_SUFFIXES or medical_kind(path) == "dicom",
                      recursive=recursive)


def _listed_paths(listing: Path) -> list[Path]:
    """The paths in a Parquet or CSV list, in the list's order (relative ones from its folder)."""
    try:
        names = _parquet_column(listing) if listing.suffix.lower() == ".parquet" else _csv_column(listing)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise InputError(listing, f"cannot read the list of paths ({error})") from None
    names = [name.strip() for name in names if name and name.strip()]
    return _unique_paths([(name, Path(name) if Path(name).is_absolute() else listing.parent / name) for name in names],
                         listing)


def _unique_paths(named: Sequence[tuple[str, Path]], listing: str | Path) -> list[Path]:
    """The paths of (name as listed, path) pairs; a list with none, or one file twice, is one line naming it."""
    if not named:
        raise InputError(listing, "lists no paths")
    seen: dict[str, str] = {}
    for name, path in named:
        key = os.path.normpath(os.path.abspath(path))
        if key in seen:
            raise InputError(listing, f"lists the same file twice ({seen[key]!r} and {name!r}); list each input once")
        seen[key] = name
    return [path for _, path in named]


def _pick_column(columns: Sequence[str], listing: Path) -> str:
    lowered = {name.lower(): name for name in columns}
    for wanted in PATH_COLUMNS:
        if wanted in lowered:
            return lowered[wanted]
    if len(columns) == 1:
        return columns[0]
    raise InputError(listing, f"has columns {list(columns)}; name the paths' column one of {list(PATH_COLUMNS)}")


def _csv_column(listing: Path) -> list[str]:
    with open(listing, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return []
    header = rows[0]
    # A one-column list without a header is a list of paths from its first line.
    if len(header) == 1 and header[0].strip().lower() not in PATH_COLUMNS:
        return [row[0] for row in rows if row]
    column = header.index(_pick_column(header, listing))
    return [row[column] for row in rows[1:] if len(row) > column]


def _parquet_column(listing: Path) -> list[str]:
    try:
        import pyarrow.parquet as parquet  # with the scale extra (ray[data] brings it)
    except ImportError:
        raise InputError(listing, "reading a Parquet list needs pyarrow: pip install 'slimvision[scale]'") from None
    table = parquet.read_table(listing)
    column = _pick_column(table.column_names, listing)
    return [str(value) for value in table.column(column).to_pylist() if value is not None]


def _common_folder(files: Sequence[Path]) -> Path:
    """The deepest folder holding every file, so outputs keep the inputs' relative layout."""
    return Path(os.path.commonpath([str(file.absolute().parent) for file in files]))


# --------------------------------------------------------------------------- planning
def plan_jobs(files: Sequence[Path], root: Path, dest: Path, suffix: str) -> list[Job]:
    """One job per file: ``dest`` / (its path under ``root``) with the task's suffix."""
    jobs = []
    for file in files:
        try:
            relative = file.absolute().relative_to(root.absolute())
        except ValueError:
            relative = Path(file.name)
        jobs.append(Job(str(file), str(dest / relative.with_suffix(suffix))))
    return jobs


def split_done(jobs: Sequence[Job], rows: dict[str, Row]) -> tuple[list[Job], list[Job]]:
    """(jobs to run, jobs the manifest marks done whose output is still there)."""
    todo: list[Job] = []
    done: list[Job] = []
    for job in jobs:
        row = rows.get(job.source)
        finished = row is not None and row.status == DONE and row.output == job.output and Path(job.output).is_file()
        (done if finished else todo).append(job)
    return todo, done


class Manifest:
    """``DEST/manifest.jsonl``: one JSON row per finished job, appended by the driver only.

    Its first line names the job (``{"job": {"task": ..., "options": ...}}``: the task and its
    options, the style vector included), so a rerun with another task or other options into the
    same folder is refused instead of skipping (or overwriting) the first job's outputs. A
    manifest written before jobs were recorded has no such line and resumes as it did.

    Rows are appended in groups (:data:`SYNC_ROWS` rows or :data:`SYNC_SECONDS`, whichever comes
    first), each group flushed and fsynced once: a cluster finishing thousands of images a second
    is not held to one disk sync per image. A run killed at any moment leaves whole rows (and at
    most one torn last line, which :meth:`load` ignores); images finished but not yet recorded
    are redone by the rerun, their outputs replaced whole. A rerun reads the latest row of each input. At the end of a run the
    file is rewritten (atomically) with exactly one row per input.
    """

    def __init__(self, folder: Path, job: dict[str, Any] | None = None) -> None:
        self.path = folder / MANIFEST_NAME
        self.job = job  # the job line this run writes (None: rows only)
        self.fresh = False  # start(): the first rows replace the file, after the job line

    def exists(self) -> bool:
        return self.path.is_file()

    def recorded_job(self) -> dict[str, Any] | None:
        """The job the manifest's first line names (None: a manifest from before job lines)."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                first = handle.readline()
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(self.path, f"cannot read the manifest ({error})") from None
        try:
            data = json.loads(first)
        except ValueError:
            return None
        return data["job"] if isinstance(data, dict) and isinstance(data.get("job"), dict) else None

    def start(self) -> None:
        """Begin a new manifest: the first rows appended replace the file (atomically), after the
        job line. Until then nothing is written, so a run that records nothing (its model does not
        load) leaves the folder as it was: no manifest naming a job that never ran."""
        self.fresh = True

    def _job_line(self) -> str:
        return "" if self.job is None else json.dumps({"job": self.job}) + "\n"

    def load(self) -> dict[str, Row]:
        """The latest row of each input (rows that do not parse, a killed run's torn line, are skipped)."""
        rows: dict[str, Row] = {}
        if not self.exists():
            return rows
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(self.path, f"cannot read the manifest ({error})") from None
        for line in lines:
            row = _parse_row(line)
            if row is not None:
                rows[row.input] = row
        return rows

    def append(self, rows: Iterable[Row]) -> None:
        """Append rows, then flush and fsync once (a group of rows costs one disk sync)."""
        if self.fresh:
            write_text_atomic(self.path, self._job_line() + "".join(json.dumps(asdict(row)) + "\n" for row in rows),
                              overwrite=True)
            self.fresh = False
            return
        with open(self.path, "a+", encoding="utf-8") as handle:
            if handle.tell() > 0 and not self._ends_with_newline():
                handle.write("\n")  # end a killed run's torn line, so this row is not glued onto it
            handle.write("".join(json.dumps(asdict(row)) + "\n" for row in rows))
            handle.flush()
            os.fsync(handle.fileno())

    def compact(self) -> None:
        """Rewrite with one row per input (the latest), in input order; atomic. (Nothing to do for a
        started manifest that has recorded no row: the file there, if any, is not this run's.)"""
        if self.fresh:
            return
        rows = sorted(self.load().values(), key=lambda row: row.input)
        recorded = None if self.job is not None else self.recorded_job()
        job = self._job_line() or (json.dumps({"job": recorded}) + "\n" if recorded else "")
        write_text_atomic(self.path, job + "".join(json.dumps(asdict(row)) + "\n" for row in rows), overwrite=True)


    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"


def job_record(spec: TaskSpec) -> dict[str, Any]:
    """What names a batch job in its manifest: the task and all its options, defaults filled in (as
    JSON gives them back), so leaving an option out and giving its default are the same job."""
    options = {name: spec.option(name) for name in sorted(OPTIONS[spec.kind])}
    model = options.get("model")
    if spec.kind == "faces-embed":
        model = face_model(model)  # a student's folder and its embedder.onnx are one model
    if isinstance(model, (str, Path)) and Path(model).exists():  # a model file or folder, however spelled
        options["model"] = os.path.abspath(model)
    return {"task": spec.kind, "options": json.loads(json.dumps(options))}


def _same_value(mine: Any, theirs: Any) -> bool:
    """Equal, with lists of numbers (a style vector) equal within float noise: the same style
    image's vector computed on another machine may differ in its last bits."""
    if isinstance(mine, list) and isinstance(theirs, list) and len(mine) == len(theirs) and mine \
            and all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in mine + theirs):
        return all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5) for a, b in zip(mine, theirs))
    return bool(mine == theirs)


def _job_differences(mine: dict[str, Any], theirs: dict[str, Any]) -> str:
    """'' when ``theirs`` (a manifest's job) is ``mine``, else what differs, in words."""
    if mine["task"] != theirs.get("task"):
        return f"a {theirs.get('task')} job"
    options = theirs.get("options") if isinstance(theirs.get("options"), dict) else {}
    differ = sorted(key for key in mine["options"].keys() | options.keys()
                    if not _same_value(mine["options"].get(key), options.get(key)))
    return f"a {mine['task']} job with different options ({', '.join(differ)})" if differ else ""


def _check_outside_pattern(dest: Path, pattern: str, jobs: Sequence[Job]) -> None:
    """Refuse outputs that the source pattern matches: the next run would take them as inputs
    (``'photos/**/*.jpg' -o photos/styled`` reads its own results back, one folder deeper each run)."""
    wanted = Path(os.path.abspath(pattern)).parts
    for job in jobs:
        if _pattern_matches(wanted, Path(os.path.abspath(job.output)).parts):
            raise OutputError(dest, f"its outputs ({job.output}) match the source pattern {pattern}: the next run "
                                    "would read them as inputs (give a folder outside it)")


def _pattern_matches(pattern: Sequence[str], parts: Sequence[str]) -> bool:
    """Whether a path's parts match a glob's parts as :func:`glob.glob` (recursive) would."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_pattern_matches(pattern[1:], parts[index:]) for index in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _pattern_matches(pattern[1:], parts[1:])


def _check_owners(todo: Sequence[Job], rows: dict[str, Row]) -> None:
    """Refuse to replace an output the manifest records for another input (another source's
    file of the same name): the first job's result would be lost without a word."""
    owners = {row.output: row.input for row in rows.values()}
    for job in todo:
        owner = owners.get(job.output)
        if owner is None or owner == job.source or not Path(job.output).exists():
            continue
        try:
            same = os.path.samefile(owner, job.source)
        except OSError:
            same = False
        if not same:
            raise OutputError(job.output, f"holds the output of {owner} (manifest.jsonl), not of {job.source}; "
                                          "give another folder, or pass --overwrite to replace it")


def _parse_row(line: str) -> Row | None:
    try:
        data = json.loads(line)
        return Row(str(data["input"]), str(data["output"]), str(data["status"]), str(data.get("error") or ""),
                   float(data.get("seconds") or 0.0))
    except (ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------- running
def run_job(task: Task, job: Job) -> Row:
    """Run one job: the task's output written atomically, or a FAILED row saying why.

    Every engine calls this, so a bad file is a row wherever it runs. Any exception of the task
    is caught (a decoder's or a model's error, not only ours): one file never ends the job.
    """
    start = time.perf_counter()
    try:
        data = task.process(Path(job.source))
        seconds = time.perf_counter() - start
        # Overwrite: only jobs the manifest does not mark done run, and a killed run's output
        # of this job (written, not yet recorded) is replaced whole, never appended to.
        write_bytes_atomic(job.output, data, overwrite=True, protected=[job.source])
    except Exception as error:  # noqa: BLE001 - recorded in the manifest; the batch goes on
        return Row(job.source, job.output, FAILED, _one_line(job.source, error), time.perf_counter() - start)
    return Row(job.source, job.output, DONE, "", seconds)


def _one_line(source: str, error: BaseException) -> str:
    message = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, SlimvisionError):
        message = f"{type(error).__name__}: {message}"
    return message if message.startswith(source) else f"{source}: {message}"


def run_local(spec: TaskSpec, jobs: Sequence[Job], workers: int) -> Iterator[Row]:
    """The local worker pool: one task (one set of sessions, shared: ONNX Runtime sessions are
    thread-safe) called from ``workers`` threads."""
    if not jobs:
        return
    task = build_task(spec)
    yield from map_in_order(lambda job: run_job(task, job), jobs, workers)


Engine = Callable[[TaskSpec, Sequence[Job], int], Iterator[Row]]


def prepare(spec: TaskSpec, source: Source, dest: str | Path, *, recursive: bool = False,
            overwrite: bool = False, protected: Iterable[str | Path] = ()) -> tuple[list[Job], list[Job], Manifest]:
    """Check the source and destination and plan the batch: (jobs to run, jobs already done, manifest).

    A destination without a manifest is a new job folder: outputs already there are refused
    unless ``overwrite``. With a manifest, the batch resumes: what it marks done is skipped
    (``overwrite`` redoes everything), the rest is (re)written. ``protected``: files the task
    reads besides the sources (style images): never outputs.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise OutputError(dest, "is a file; give a folder for the batch's outputs")
    files, root = read_sources(source, recursive, medical=spec.kind == "vae-denoise")
    named = _is_named(source)
    if named and Path(str(source)).is_dir():
        check_outside_inputs(dest, [Path(str(source))], recursive=recursive)  # outputs would be inputs next run
    jobs = plan_jobs(files, root, dest, output_suffix(spec.kind))
    if named and not Path(str(source)).exists() and glob.has_magic(str(source)):
        _check_outside_pattern(dest, str(source), jobs)
    record = job_record(spec)
    manifest = Manifest(dest, record)
    if manifest.path.exists() and not manifest.exists():
        raise OutputError(manifest.path, "is not a file; the batch keeps its manifest there (give another folder)")
    # An empty manifest records nothing: the folder is new to this job (its files are not replaced).
    resuming = manifest.exists() and manifest.path.stat().st_size > 0
    if resuming and not overwrite:
        recorded = manifest.recorded_job()
        if recorded is None and not manifest.load():
            raise OutputError(manifest.path, "is not a batch manifest (no job line, no rows); refusing to replace it "
                                             "(give another folder)")
        other = "" if recorded is None else _job_differences(record, recorded)
        if other:
            raise OutputError(manifest.path, f"records {other}; give another folder, or pass --overwrite to redo "
                                             "every image here as this job")
    plan_outputs([Path(job.output) for job in jobs], overwrite=overwrite or resuming,
                 protected=[*(job.source for job in jobs), *protected],
                 duplicate_problem="two inputs would be written to this same output; rename one")
    if overwrite or not resuming:
        manifest.start()  # the job line first; --overwrite redoes every image as this job
        return jobs, [], manifest
    rows = manifest.load()
    todo, done = split_done(jobs, rows)
    _check_owners(todo, rows)
    return todo, done, manifest


def run_batch(spec: TaskSpec, source: Source, dest: str | Path, *, workers: int | None = None,
              engine: Engine | None = None, engine_name: str = "local", recursive: bool = False,
              overwrite: bool = False, protected: Iterable[str | Path] = (),
              on_row: Callable[[Row], None] | None = None,
              on_plan: Callable[[int, int], None] | None = None) -> Summary:
    """Plan, run on ``engine`` (default: the local worker pool), record every row; the summary.

    Args:
        workers: jobs at once (default: one per CPU); Ray actors with the Ray engine.
        protected: files the task reads besides the sources: never outputs.
        on_row: called with each row as it is recorded (a progress bar).
        on_plan: called once with (jobs to run, jobs skipped) before any runs.
    """
    todo, done, manifest = prepare(spec, source, dest, recursive=recursive, overwrite=overwrite, protected=protected)
    workers = max(1, min(workers or available_cpus(), max(len(todo), 1)))
    if on_plan is not None:
        on_plan(len(todo), len(done))
    if Path(dest).is_dir():  # else made by the first output or manifest row written
        remove_stale_temps(dest)  # a killed run's half-written outputs (their writer is gone)
    summary = Summary(skipped=len(done), engine=engine_name, workers=workers)
    started = time.perf_counter()
    pending: list[Row] = []
    synced = time.monotonic()
    try:
        for row in (engine or run_local)(spec, todo, workers):
            pending.append(row)
            if len(pending) >= SYNC_ROWS or time.monotonic() - synced >= SYNC_SECONDS:
                manifest.append(pending)
                pending, synced = [], time.monotonic()
            summary.done += row.status == DONE
            summary.failed += [row] if row.status == FAILED else []
            if on_row is not None:
                on_row(row)
    finally:
        if pending:
            manifest.append(pending)
        summary.seconds = time.perf_counter() - started
        if manifest.exists():
            manifest.compact()
    return summary
