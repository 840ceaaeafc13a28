"""The bounded job queue (429 when full, 504 past the deadline) and a load test on loopback."""

from __future__ import annotations

import asyncio
import io
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from PIL import Image  # noqa: E402

from slimvision.server.app import serve_in_thread  # noqa: E402
from slimvision.server.errors import ApiError  # noqa: E402
from slimvision.server.jobs import JobQueue  # noqa: E402
from slimvision.server.settings import ServerSettings  # noqa: E402


def run_async(coroutine):
    """asyncio.run on a thread of its own: Playwright's sync API (tests/web) leaves an event loop
    running on the main thread, where asyncio.run refuses to start another."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_a_full_queue_refuses_with_429_and_frees_slots_when_jobs_end():
    queue = JobQueue(workers=1, queue_size=1, timeout_s=5)
    release = threading.Event()

    async def scenario():
        first = asyncio.create_task(queue.run(release.wait))
        second = asyncio.create_task(queue.run(release.wait))
        await asyncio.sleep(0.05)
        with pytest.raises(ApiError) as refused:
            await queue.run(time.sleep, 0)
        release.set()
        await asyncio.gather(first, second)
        return refused.value, await queue.run(lambda: "done")

    refused, after = run_async(scenario())
    assert refused.status == 429 and refused.headers == {"Retry-After": "1"}
    assert after == "done" and queue.active == 0
    queue.shutdown()


def test_a_slow_job_gets_504_and_keeps_its_slot_until_it_really_ends():
    queue = JobQueue(workers=1, queue_size=0, timeout_s=0.1)
    release = threading.Event()

    async def scenario():
        with pytest.raises(ApiError) as late:
            await queue.run(release.wait)
        busy = queue.active
        release.set()
        await asyncio.sleep(0.05)
        return late.value, busy

    late, busy = run_async(scenario())
    assert late.status == 504 and "0.1 s" in late.message
    assert busy == 1 and queue.active == 0
    queue.shutdown()


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_load_200_requests_8_at_a_time(tmp_path):
    """Only 200s and 429s; memory after the load stays within a bound of memory after warm-up."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((200, 300), 255, np.uint8)).save(buffer, format="PNG")
    page = buffer.getvalue()
    url, stop = serve_in_thread(ServerSettings(workers=2, queue_size=2, gallery=tmp_path / "g.sqlite"))
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            def request(index: int) -> int:
                if index % 2:
                    return client.get("/api/gan/sample", params={"seed": index, "n": 8}).status_code
                return client.post("/api/numerals/read", files={"image": ("p.png", page, "image/png")}).status_code

            for index in range(4):  # warm-up: models loaded
                assert request(index) == 200
            before = _rss_mb()
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(request, range(200)))
            growth = _rss_mb() - before
            assert client.get("/api/health").json()["jobs_in_progress"] == 0
    finally:
        stop()
    counts = {status: statuses.count(status) for status in set(statuses)}
    print(f"load test: {counts}, RSS growth {growth:.1f} MB")
    assert set(counts) <= {200, 429}, counts
    assert counts.get(200, 0) >= 50, counts
    assert growth < 200, f"RSS grew by {growth:.0f} MB over 200 requests"


@pytest.mark.parametrize("job", [lambda: next(iter([])), lambda: (_ for _ in ()).throw(SystemExit(3))],
                         ids=["StopIteration", "SystemExit"])
def test_whatever_a_job_raises_reaches_the_request_at_once(job):
    """asyncio futures refuse StopIteration (the request used to wait for its 504), and a
    BaseException would pass the app's error handlers: both arrive as a RuntimeError."""
    queue = JobQueue(workers=1, queue_size=0, timeout_s=600)
    with pytest.raises(RuntimeError, match="a job raised"):
        run_async(queue.run(job))
    assert queue.active == 0
    queue.shutdown()
