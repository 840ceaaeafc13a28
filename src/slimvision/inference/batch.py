"""Run an image -> image function over many files, overlapping file I/O with inference.

Decoding the next image and encoding the previous result happen on worker threads (Pillow and
NumPy release the GIL while they work), so the model is rarely left waiting for the disk.

Example:
    >>> jobs = [FileJob(Path("in.jpg"), Path("out/in.png"))]                    # doctest: +SKIP
    >>> for result in process_files(jobs, lambda image: image[::-1]):           # doctest: +SKIP
    ...     print(result.output, result.seconds)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
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


def process_files(jobs: Sequence[FileJob], fn: Callable[[np.ndarray], np.ndarray], *,
                  overwrite: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                  quality: int = 95) -> Iterator[FileResult]:
    """Apply ``fn`` ((H, W, 3) uint8 -> (H', W', 3) uint8) to every job's source.

    Outputs are checked up front (see :func:`check_outputs`) and each is written atomically;
    a bad input raises its one-line error after the outputs finished so far were written.
    """
    check_outputs(jobs, overwrite)
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
