"""A frame pipeline: decoding, the stages of the work and the sink overlap, one thread each.

Between threads sit bounded queues, so a fast decoder never runs ahead by more than a few
frames. Each stage is one thread taking frames first in, first out, so the order is kept.

- **File mode** (``live=False``): a full queue makes the stage before it wait; no frame is ever
  dropped.
- **Parallel stages**: a stage given as ``Parallel(function, workers)`` runs ``workers`` frames
  at once in a thread pool (for work without state between frames, such as one ONNX Runtime run
  per frame on a one-thread session: two one-thread runs side by side beat one two-thread run
  on two cores); its results still leave in order.
- **Live mode** (``live=True``, a camera): the source never waits. The first stage always takes
  the newest frame; a frame still waiting when a newer one arrives is dropped (counted in
  ``dropped``). The last frame of a finite source is always delivered.

ONNX Runtime, ffmpeg pipes, OpenCV and numpy's large array operations release the GIL, so the
threads really run side by side. The sink runs in the calling thread (OpenCV's windows must be
drawn from the main thread); it returns ``False`` to stop early (the source is closed then). An
exception in any thread stops the others and is raised again in the caller.

Example:
    >>> stats = run_frames(range(5), [lambda x: x * 10], print)
    0
    10
    20
    30
    40
    >>> (stats.frames_in, stats.frames_out, stats.dropped)
    (5, 5, 0)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

_END = object()  # sent down the queues after the last frame
_POLL_S = 0.05  # how often a waiting thread looks whether the pipeline was stopped


@dataclass
class PipelineStats:
    """What went through: frames read from the source, delivered to the sink, dropped (live)."""

    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    stopped: bool = False  # the sink asked to stop before the source ended


@dataclass(frozen=True)
class Parallel:
    """A stage whose frames may be worked on ``workers`` at a time (the function must not keep
    state between frames); results are passed on in order."""

    function: Callable[[Any], Any]
    workers: int = 2

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


class _Pending:
    """A parallel stage's result on its way: the next step waits for it."""

    def __init__(self, future: Future[Any]) -> None:
        self.future = future


def _ready(item: Any) -> Any:
    return item.future.result() if isinstance(item, _Pending) else item


class _Stop(Exception):
    """Raised inside a thread when the pipeline is stopping."""


def run_frames(source: Iterable[Any], stages: Sequence[Callable[[Any], Any] | Parallel], sink: Callable[[Any], bool | None],
               *, live: bool = False, queue_size: int = 4) -> PipelineStats:
    """Run ``sink(stage_n(...stage_1(frame)))`` for every frame, each step in its own thread.

    Args:
        source: Frames (any objects), read in a thread of their own; a generator is closed
            there when the pipeline stops early.
        stages: Functions applied in order, each in its own thread (may keep state: each sees
            the frames one at a time, in order), or :class:`Parallel` stages.
        sink: Called in the calling thread with each result, in order; return ``False`` to stop.
        live: Drop stale frames instead of waiting (see the module docstring).
        queue_size: Frames each queue holds in file mode (live mode holds one per queue).

    Returns:
        The :class:`PipelineStats`.

    Raises:
        Whatever the source, a stage or the sink raised (the first error).
    """
    if queue_size < 1:
        raise ValueError(f"queue_size must be >= 1, got {queue_size}")
    size = 1 if live else queue_size
    queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=size) for _ in range(len(stages) + 1)]
    stop = threading.Event()
    errors: list[BaseException] = []
    stats = PipelineStats()

    def put(target: queue.Queue[Any], item: Any) -> None:
        while True:
            if stop.is_set():
                raise _Stop
            try:
                target.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def get(source_queue: queue.Queue[Any]) -> Any:
        while True:
            if stop.is_set():
                raise _Stop
            try:
                return source_queue.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    def put_newest(target: queue.Queue[Any], item: Any) -> None:
        """Live mode: replace a frame nobody took yet with the newer one."""
        while True:
            try:
                target.put_nowait(item)
                return
            except queue.Full:
                try:
                    target.get_nowait()
                    stats.dropped += 1
                except queue.Empty:
                    pass

    def fail(exc: BaseException) -> None:
        if not errors:
            errors.append(exc)
        stop.set()

    def read() -> None:
        iterator = iter(source)
        try:
            for item in iterator:
                if stop.is_set():
                    break
                stats.frames_in += 1
                if live:
                    put_newest(queues[0], item)
                else:
                    put(queues[0], item)
            else:
                put(queues[0], _END)
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            fail(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # a generator stops its decoder (ffmpeg) here, in its own thread

    def work(index: int) -> None:
        stage, inbox, outbox = stages[index], queues[index], queues[index + 1]
        pool = ThreadPoolExecutor(stage.workers, f"frames-stage-{index}") if isinstance(stage, Parallel) else None
        try:
            while True:
                item = _ready(get(inbox))
                if item is _END:
                    put(outbox, _END)
                    return
                if pool is not None:
                    put(outbox, _Pending(pool.submit(stage.function, item)))  # type: ignore[union-attr]
                else:
                    put(outbox, stage(item))  # type: ignore[operator]
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            fail(exc)
        finally:
            if pool is not None:  # on a stop, frames not yet started are dropped; else all finish
                pool.shutdown(wait=True, cancel_futures=stop.is_set())

    threads = [threading.Thread(target=read, name="frames-source", daemon=True)]
    threads += [threading.Thread(target=work, args=(i,), name=f"frames-stage-{i}", daemon=True)
                for i in range(len(stages))]
    for thread in threads:
        thread.start()
    try:
        while True:
            item = _ready(get(queues[-1]))
            if item is _END:
                break
            stats.frames_out += 1
            if sink(item) is False:
                stats.stopped = True
                break
    except _Stop:
        pass
    except BaseException as exc:
        fail(exc)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return stats
