"""Run an image -> image function over many files, keeping every core busy.

With one worker, decoding the next image and encoding the previous result happen on I/O
threads (Pillow and NumPy release the GIL while they work), so the model rarely waits for the
disk. With several workers, each one loads, paints and saves its own images, and the model runs
on several images at once: a 1-thread ONNX Runtime run per core is 1.2-1.3x the throughput of
one run spread over all cores (small images leave a multi-threaded run too little to share).
A :class:`MemoryGate` keeps concurrent runs within one working-memory budget.

Example:
    >>> jobs = [FileJob(Path("in.jpg"), Path("out/in.png"))]                    # doctest: +SKIP
    >>> for result in process_files(jobs, lambda image: image[::-1]):           # doctest: +SKIP
    ...     print(result.output, result.seconds)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from slimvision.errors import OutputError, SlimvisionError
from slimvision.io.atomic import plan_outputs, write_files_atomic
from slimvision.io.images import DEFAULT_MAX_PIXELS, load_image, save_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileJob:
    source: Path
    output: Path


@dataclass(frozen=True)
class FileResult:
    """What became of one job: written, passed over (``error``), or left as it was (``skipped``)."""

    source: Path
    output: Path
    width: int
    height: int
    seconds: float  # model time for this image (I/O overlaps and is not counted)
    error: str | None = None  # with keep_going: the one-line reason this input was passed over
    skipped: bool = False  # with skip_existing: the output was already complete, nothing was done

    @property
    def ok(self) -> bool:
        """True for an output written by this run."""
        return self.error is None and not self.skipped


def check_outputs(jobs: Sequence[FileJob], overwrite: bool, protected: Iterable[str | Path] = ()) -> None:
    """Fail before any work if two jobs share an output, an output is an input, or exists.

    Args:
        jobs: the batch.
        overwrite: outputs that exist may be replaced.
        protected: inputs besides the jobs' sources (style images, masks, weights) that no
            output may be.
    """
    plan_outputs([job.output for job in jobs], overwrite=overwrite,
                 protected=[*(job.source for job in jobs), *protected],
                 duplicate_problem="two inputs would be written to this same output; rename one")


def output_complete(path: Path) -> bool:
    """True if ``path`` holds a whole image (what ``--skip-existing`` keeps).

    Our outputs appear only by an atomic rename after the data is flushed, so one of ours that
    exists is complete; this also catches a file cut short by something else (empty, or
    failing Pillow's structural check: PNG chunk CRCs up to IEND, header of other formats).
    """
    from PIL import Image

    try:
        if path.stat().st_size == 0:
            return False
        with Image.open(path) as image:
            image.verify()
    except Exception:  # noqa: BLE001 - any failure to read it back means "redo it"
        return False
    return True


def split_existing(jobs: Sequence[FileJob]) -> tuple[list[FileJob], list[FileJob]]:
    """(jobs to run, jobs whose output is already complete) for a resumed batch."""
    todo: list[FileJob] = []
    done: list[FileJob] = []
    for job in jobs:
        (done if job.output.is_file() and output_complete(job.output) else todo).append(job)
    return todo, done


def write_png_set(images: Sequence[np.ndarray], targets: Sequence[str | Path], *, overwrite: bool = False,
                  protected: Iterable[str | Path] = (),
                  also: Sequence[tuple[str | Path, bytes]] = ()) -> list[Path]:
    """Write PNGs that belong together (and ``also`` files after them, e.g. a manifest): all or none.

    Every path is checked before anything is written (see :func:`slimvision.io.atomic.plan_outputs`);
    each image is encoded as its temp file is written, and the files appear only once all are
    complete. A run that fails half-way (a full disk) leaves none of them.

    Example:
        >>> write_png_set([np.zeros((8, 8), np.uint8)], ["out/a.png"])  # doctest: +SKIP
        [PosixPath('out/a.png')]
    """
    from slimvision.io.images import DEFAULT_PNG_LEVEL
    from slimvision.io.png import encode_png

    for target in targets:
        if Path(target).suffix.lower() != ".png":
            raise OutputError(target, "is written as PNG; give a .png name")
    files: list[tuple[str | Path, Any]] = [
        (target, lambda image=image: encode_png(np.ascontiguousarray(image), DEFAULT_PNG_LEVEL))
        for image, target in zip(images, targets, strict=True)]
    return write_files_atomic([*files, *also], overwrite=overwrite, protected=protected)


def available_cpus() -> int:
    """CPUs this process may run on (affinity-aware where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


class MemoryGate:
    """Admits concurrent runs first come, first served while their memory fits a budget.

    A run estimated above the whole budget is admitted alone (it will tile itself down to the
    budget), so the sum of admitted estimates never exceeds the budget.
    """

    def __init__(self, budget_mb: float) -> None:
        if budget_mb <= 0:
            raise ValueError(f"memory budget must be positive, got {budget_mb}")
        self.budget_mb = budget_mb
        self.in_use_mb = 0.0
        self._changed = threading.Condition()
        self._tickets = count()
        self._queue: deque[int] = deque()

    @contextmanager
    def hold(self, estimate_mb: float) -> Iterator[None]:
        need = min(max(estimate_mb, 0.0), self.budget_mb)
        with self._changed:
            ticket = next(self._tickets)
            self._queue.append(ticket)
            # First in line and fits: no small run can overtake a big one forever.
            self._changed.wait_for(lambda: self._queue[0] == ticket and self.in_use_mb + need <= self.budget_mb)
            self._queue.popleft()
            self.in_use_mb += need
            self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self.in_use_mb -= need
                self._changed.notify_all()


def process_files(jobs: Sequence[FileJob], fn: Callable[[np.ndarray], np.ndarray], *,
                  overwrite: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                  quality: int = 95, workers: int = 1, gate: MemoryGate | None = None,
                  memory_mb: Callable[[np.ndarray], float] | None = None,
                  protected: Iterable[str | Path] = (), keep_going: bool = False,
                  skip_existing: bool = False) -> Iterator[FileResult]:
    """Apply ``fn`` ((H, W, 3) uint8 -> (H', W', 3) uint8) to every job's source.

    Outputs are checked up front (see :func:`check_outputs`) and each is written atomically.
    Results come back in the order of ``jobs``. A bad input raises its one-line error once
    the jobs before it are written (with several workers, jobs after it that were already
    running finish and are written too; no new ones start), unless ``keep_going``.

    Args:
        workers: images processed at once; ``fn`` must then be safe to call from several
            threads (ONNX Runtime sessions are).
        gate, memory_mb: with several workers, a run starts only once ``gate`` admits
            ``memory_mb(image)`` megabytes.
        protected: inputs besides the sources (style images, masks, weights): never outputs.
        keep_going: a bad input (any :class:`SlimvisionError` but an :class:`OutputError`,
            which would repeat for every file) gives a result with ``error`` set and the batch
            goes on; a failure to write still stops it.
        skip_existing: outputs that already exist and are complete (see
            :func:`output_complete`) come back with ``skipped`` set; others are (re)written.
    """
    protected = list(protected)
    guarded = [*(job.source for job in jobs), *protected]
    done: list[FileJob] = []
    if skip_existing:
        check_outputs(jobs, True, guarded)  # an input is never "already done", nor two jobs one output
        jobs, done = split_existing(jobs)
        overwrite = True  # what is left either does not exist or is incomplete: redo it
    check_outputs(jobs, overwrite, guarded)
    for job in done:
        yield FileResult(job.source, job.output, 0, 0, 0.0, skipped=True)
    settings = _Settings(fn, overwrite, max_pixels, quality, protected, keep_going)
    if workers > 1 and len(jobs) > 1:
        yield from _parallel(jobs, settings, workers, gate, memory_mb)
    else:
        yield from _sequential(jobs, settings)


@dataclass(frozen=True)
class _Settings:
    """What every job of one batch shares."""

    fn: Callable[[np.ndarray], np.ndarray]
    overwrite: bool
    max_pixels: int | None
    quality: int
    protected: list[str | Path]  # besides the sources: style images, masks, weights
    keep_going: bool

    def passed_over(self, job: FileJob, error: BaseException) -> FileResult | None:
        """The result for a job that failed, if the batch goes on past it (else None: re-raise)."""
        if not self.keep_going or not isinstance(error, SlimvisionError) or isinstance(error, OutputError):
            return None
        message = str(error)
        if not message.startswith(str(job.source)):  # e.g. "content image is 40x12; ...": say which
            message = f"{job.source}: {message}"
        log.info("passing over %s", message)
        return FileResult(job.source, job.output, 0, 0, 0.0, error=message)

    def save(self, result: np.ndarray, job: FileJob) -> Path:
        # Every output was checked against every input up front (check_outputs); each write checks
        # again against its own source and the shared inputs only: against all n sources it was
        # O(n) stats per image (0.1 s each in a 2,000-image folder).
        return save_image(result, job.output, overwrite=self.overwrite, protected=[job.source, *self.protected],
                          quality=self.quality)


def _sequential(jobs: Sequence[FileJob], settings: _Settings) -> Iterator[FileResult]:
    """One image at a time, with the next load and the previous save on I/O threads."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="slimvision-io") as pool:
        def load(job: FileJob) -> Future[np.ndarray]:
            return pool.submit(load_image, job.source, max_pixels=settings.max_pixels)

        pending_save: Future[Path] | None = None
        next_image = load(jobs[0]) if jobs else None
        for index, job in enumerate(jobs):
            assert next_image is not None
            loading, next_image = next_image, (load(jobs[index + 1]) if index + 1 < len(jobs) else None)
            try:
                image = loading.result()
                start = time.perf_counter()
                result = settings.fn(image)
                seconds = time.perf_counter() - start
            except Exception as error:  # noqa: BLE001 - re-raised unless the batch goes on past it
                failure = settings.passed_over(job, error)
                if failure is None:
                    raise
                yield failure
                continue
            if pending_save is not None:
                pending_save.result()  # surface a failed write before queueing the next
            pending_save = pool.submit(settings.save, result, job)
            yield FileResult(job.source, job.output, result.shape[1], result.shape[0], seconds)
        if pending_save is not None:
            pending_save.result()


def _parallel(jobs: Sequence[FileJob], settings: _Settings, workers: int, gate: MemoryGate | None,
              memory_mb: Callable[[np.ndarray], float] | None) -> Iterator[FileResult]:
    """``workers`` threads, each loading, painting and saving whole jobs."""

    def paint(job: FileJob) -> FileResult:
        image = load_image(job.source, max_pixels=settings.max_pixels)
        admitted = gate.hold(memory_mb(image)) if gate is not None and memory_mb is not None else nullcontext()
        with admitted:
            start = time.perf_counter()
            result = settings.fn(image)
            seconds = time.perf_counter() - start
        settings.save(result, job)
        return FileResult(job.source, job.output, result.shape[1], result.shape[0], seconds)

    def run_job(job: FileJob) -> FileResult:
        try:
            return paint(job)
        except Exception as error:  # noqa: BLE001 - re-raised unless the batch goes on past it
            failure = settings.passed_over(job, error)
            if failure is None:
                raise
            return failure

    yield from map_in_order(run_job, jobs, workers)


_Item = TypeVar("_Item")
_Out = TypeVar("_Out")


def map_in_order(fn: Callable[[_Item], _Out], items: Iterable[_Item], workers: int) -> Iterator[_Out]:
    """``fn`` over ``items`` on ``workers`` threads, results in the order of ``items``.

    The worker pool of every local batch (``process_files`` and ``slimvision batch``): a short
    queue of 2 x ``workers`` items keeps every worker busy without decoding the whole folder
    ahead. An exception from ``fn`` propagates once the results before it are yielded; nothing
    new starts after it (or after the caller stops iterating).

    Example:
        >>> list(map_in_order(lambda x: x * x, range(5), workers=2))
        [0, 1, 4, 9, 16]
    """
    upcoming = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slimvision-worker") as pool:
        running: deque[Future[_Out]] = deque(pool.submit(fn, item) for _, item in zip(range(2 * workers), upcoming))
        try:
            while running:
                result = running.popleft().result()
                following = next(upcoming, None)
                if following is not None:
                    running.append(pool.submit(fn, following))
                yield result
        finally:
            for future in running:  # after an error (or an abandoned loop): start nothing new
                future.cancel()
