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

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import numpy as np

from slimvision.errors import OutputError
from slimvision.io.images import DEFAULT_MAX_PIXELS, load_image, save_image


@dataclass(frozen=True)
class FileJob:
    source: Path
    output: Path


@dataclass(frozen=True)
class FileResult:
    source: Path
    output: Path
    width: int
    height: int
    seconds: float  # model time for this image (I/O overlaps and is not counted)


def check_outputs(jobs: Sequence[FileJob], overwrite: bool) -> None:
    """Fail before any work if two jobs share an output, an output is an input, or exists."""
    sources = {job.source.resolve() for job in jobs}
    seen: set[Path] = set()
    for job in jobs:
        target = job.output.resolve()
        if target in seen:
            raise OutputError(job.output, "two inputs would be written to this same output; rename one")
        if target in sources:
            raise OutputError(job.output, "is an input file; refusing to overwrite an input")
        if job.output.exists() and not overwrite:
            raise OutputError(job.output, "exists; pass --overwrite to replace it")
        seen.add(target)


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
                  memory_mb: Callable[[np.ndarray], float] | None = None) -> Iterator[FileResult]:
    """Apply ``fn`` ((H, W, 3) uint8 -> (H', W', 3) uint8) to every job's source.

    Outputs are checked up front (see :func:`check_outputs`) and each is written atomically.
    Results come back in the order of ``jobs``. A bad input raises its one-line error once
    the jobs before it are written (with several workers, jobs after it that were already
    running finish and are written too; no new ones start).

    Args:
        workers: images processed at once; ``fn`` must then be safe to call from several
            threads (ONNX Runtime sessions are).
        gate, memory_mb: with several workers, a run starts only once ``gate`` admits
            ``memory_mb(image)`` megabytes.
    """
    check_outputs(jobs, overwrite)
    if workers > 1 and len(jobs) > 1:
        yield from _parallel(jobs, fn, overwrite, max_pixels, quality, workers, gate, memory_mb)
    else:
        yield from _sequential(jobs, fn, overwrite, max_pixels, quality)


def _sequential(jobs: Sequence[FileJob], fn: Callable[[np.ndarray], np.ndarray], overwrite: bool,
                max_pixels: int | None, quality: int) -> Iterator[FileResult]:
    """One image at a time, with the next load and the previous save on I/O threads."""
    protected = [job.source for job in jobs]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="slimvision-io") as pool:
        def load(job: FileJob) -> Future[np.ndarray]:
            return pool.submit(load_image, job.source, max_pixels=max_pixels)

        pending_save: Future[Path] | None = None
        next_image = load(jobs[0]) if jobs else None
        for index, job in enumerate(jobs):
            assert next_image is not None
            image = next_image.result()
            next_image = load(jobs[index + 1]) if index + 1 < len(jobs) else None
            start = time.perf_counter()
            result = fn(image)
            seconds = time.perf_counter() - start
            if pending_save is not None:
                pending_save.result()  # surface a failed write before queueing the next
            pending_save = pool.submit(save_image, result, job.output, overwrite=overwrite,
                                       protected=protected, quality=quality)
            yield FileResult(job.source, job.output, result.shape[1], result.shape[0], seconds)
        if pending_save is not None:
            pending_save.result()


def _parallel(jobs: Sequence[FileJob], fn: Callable[[np.ndarray], np.ndarray], overwrite: bool,
              max_pixels: int | None, quality: int, workers: int, gate: MemoryGate | None,
              memory_mb: Callable[[np.ndarray], float] | None) -> Iterator[FileResult]:
    """``workers`` threads, each loading, painting and saving whole jobs."""
    protected = [job.source for job in jobs]

    def run_job(job: FileJob) -> FileResult:
        image = load_image(job.source, max_pixels=max_pixels)
        admitted = gate.hold(memory_mb(image)) if gate is not None and memory_mb is not None else nullcontext()
        with admitted:
            start = time.perf_counter()
            result = fn(image)
            seconds = time.perf_counter() - start
        save_image(result, job.output, overwrite=overwrite, protected=protected, quality=quality)
        return FileResult(job.source, job.output, result.shape[1], result.shape[0], seconds)

    upcoming = iter(jobs)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slimvision-worker") as pool:
        # A short queue: enough to keep every worker busy, without decoding the whole folder.
        running: deque[Future[FileResult]] = deque(pool.submit(run_job, job) for _, job in zip(range(2 * workers), upcoming))
        try:
            while running:
                result = running.popleft().result()
                following = next(upcoming, None)
                if following is not None:
                    running.append(pool.submit(run_job, following))
                yield result
        finally:
            for future in running:  # after an error (or an abandoned loop): start nothing new
                future.cancel()
