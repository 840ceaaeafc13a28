"""A bounded queue in front of the models: a fixed number of worker threads, a fixed number of
waiting requests, 429 beyond that, 504 past the deadline.

Model runs are CPU-bound and ONNX Runtime already spreads each one over the cores, so running
more at once only makes every request slower; refusing early keeps latency bounded under load.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from slimvision.server.errors import ApiError

T = TypeVar("T")


class JobQueue:
    """Runs blocking functions on ``workers`` threads, with at most ``queue_size`` waiting.

    A job counts against the limit until its thread is done, even when its request already
    timed out: a timed-out run still holds a core, so the next request must not pretend otherwise.
    """

    def __init__(self, workers: int, queue_size: int, timeout_s: float) -> None:
        self.capacity = workers + queue_size
        self.timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="slimvision-job")
        self._lock = threading.Lock()
        self._active = 0

    @property
    def active(self) -> int:
        """Jobs running or waiting now."""
        return self._active

    async def run(self, function: Callable[..., T], *args: object) -> T:
        with self._lock:
            if self._active >= self.capacity:
                raise ApiError(429, "busy", f"the server is busy ({self._active} requests in progress); "
                                            "try again in a moment", headers={"Retry-After": "1"})
            self._active += 1
        future = self._executor.submit(_call, function, *args)
        future.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except TimeoutError:
            future.cancel()  # frees the slot at once if the job had not started yet
            raise ApiError(504, "timeout", f"the request took longer than {self.timeout_s:g} s") from None

    def _release(self, _: object) -> None:
        with self._lock:
            self._active -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _call(function: Callable[..., T], *args: object) -> T:
    """Run a job so that whatever it raises can reach the awaiting request.

    asyncio futures refuse StopIteration (it would end the coroutine that awaits it): the
    callback that copies the thread's result failed, the request never woke and answered 504 a
    minute later. BaseExceptions that are not Exceptions (SystemExit, GeneratorExit from a
    library) would escape the app's error handlers. Both become a RuntimeError, answered at
    once as a JSON 500 like any other unexpected error.
    """
    try:
        return function(*args)
    except StopIteration as exc:
        raise RuntimeError(f"a job raised StopIteration ({exc!r})") from exc
    except Exception:
        raise
    except BaseException as exc:
        raise RuntimeError(f"a job raised {type(exc).__name__}") from exc
