"""Hostile and slow clients against a real server on loopback, with raw sockets.

Stalled requests (headers, then a few bytes of a large body, then silence), partial headers and
idle connections must neither starve other clients nor stay open forever, and every answer the
server gives them is JSON like every other error.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from slimvision.server.app import serve_in_thread  # noqa: E402
from slimvision.server.settings import ServerSettings  # noqa: E402

#: Headers of an upload that announces 100 kB, of which the client sends 7 bytes and then nothing.
STALLED_UPLOAD = (b"POST /api/numerals/read HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\nCo")
PARTIAL_HEADERS = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: "
HANG_GUARD_S = 30  # only so that a broken server fails the test instead of hanging it


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, ServerSettings]]:
    settings = ServerSettings(gallery=tmp_path / "g.sqlite")
    url, stop = serve_in_thread(settings)
    try:
        yield url, settings
    finally:
        stop()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _stalled(port: int, payload: bytes, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.settimeout(HANG_GUARD_S)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    if payload:
        sock.sendall(payload)
    return sock


def _is_open(sock: socket.socket) -> bool:
    """True while the server has neither answered nor closed this connection."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # an answer, or b"" for a close
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(HANG_GUARD_S)


def _closed_by_server(sock: socket.socket) -> bool:
    """Read (and drop) what is left until the server closes; False if it keeps the connection."""
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        pass  # reset: closed while our bytes were still arriving
    return True


def _answer(sock: socket.socket) -> tuple[int, dict]:
    """Read what the server sends until it closes: (status, JSON body)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    assert headers["content-type"] == "application/json", data
    assert headers["connection"] == "close"
    return int(status_line.split()[1]), json.loads(body)


def _loopback_sources(count: int) -> list[str]:
    """Distinct loopback addresses to connect from (Linux routes all of 127/8 to lo), else skip."""
    sources = [f"127.0.0.{index}" for index in range(2, 2 + count)]
    try:
        with socket.socket() as probe:
            probe.bind((sources[-1], 0))
    except OSError as exc:
        pytest.skip(f"cannot connect from other loopback addresses here ({exc})")
    return sources


def test_health_answers_while_200_stalled_connections_are_open(server):
    """The issue's attack: many uploads stalled after 7 bytes of a 100 kB body used to turn every
    other request into a plain-text 503 (uvicorn's limit_concurrency counted them)."""
    url, settings = server
    per_client = settings.max_connections_per_client
    sources = _loopback_sources(-(-200 // per_client))
    attackers = [_stalled(_port(url), STALLED_UPLOAD if index % 4 else PARTIAL_HEADERS, sources[index % len(sources)])
                 for index in range(200)]
    try:
        time.sleep(0.3)  # let the server read what they sent
        started = time.perf_counter()
        health = httpx.get(f"{url}/api/health", timeout=HANG_GUARD_S)
        latency = time.perf_counter() - started
        still_open = sum(_is_open(sock) for sock in attackers)
    finally:
        for sock in attackers:
            sock.close()
    print(f"/api/health answered in {latency * 1000:.0f} ms with {still_open} stalled connections open")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert still_open == 200  # they really were open (each address is within its own cap)


def test_one_address_cannot_hold_more_than_its_cap_nor_lock_itself_out(server):
    """60 stalled uploads from one address: the oldest stalled ones make room (a JSON 503), so the
    same address still gets its next request answered."""
    url, settings = server
    attackers = [_stalled(_port(url), STALLED_UPLOAD) for _ in range(60)]
    try:
        time.sleep(0.3)
        health = httpx.get(f"{url}/api/health", timeout=HANG_GUARD_S)
        still_open = [sock for sock in attackers if _is_open(sock)]
        evicted = [sock for sock in attackers if sock not in still_open]
        answers = [_answer(sock) for sock in evicted[:3]]
    finally:
        for sock in attackers:
            sock.close()
    assert health.status_code == 200
    assert len(still_open) < settings.max_connections_per_client
    for status, body in answers:
        assert status == 503 and body["error"]["code"] == "too_many_connections"


def test_parallel_browser_requests_from_one_address_are_all_served(server):
    """A browser opens 6-8 connections per origin; the per-client cap must not refuse them."""
    url, _ = server
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    with httpx.Client(base_url=url, timeout=HANG_GUARD_S, limits=limits) as client:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: client.get("/api/health").status_code, range(64)))
    assert statuses == [200] * 64


@pytest.fixture
def quick_server(tmp_path) -> Iterator[str]:
    settings = ServerSettings(gallery=tmp_path / "g.sqlite", header_timeout_s=0.5, body_timeout_s=0.5)
    url, stop = serve_in_thread(settings)
    try:
        yield url
    finally:
        stop()


def test_partial_headers_get_a_json_408_and_are_closed(quick_server):
    sock = _stalled(_port(quick_server), PARTIAL_HEADERS)
    with sock:
        status, body = _answer(sock)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert "headers" in body["error"]["message"]


def test_a_stalled_body_gets_a_json_408_and_is_closed(quick_server):
    sock = _stalled(_port(quick_server), STALLED_UPLOAD)
    with sock:
        status, body = _answer(sock)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert "body" in body["error"]["message"]


def test_a_body_dripped_after_the_answer_does_not_keep_the_connection(quick_server):
    """A GET with a body the app never reads: the answer goes out, then the drip is cut off."""
    sock = _stalled(_port(quick_server), b"GET /api/health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
    with sock:
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        for _ in range(20):  # one byte every 0.1 s keeps resetting a body timer, but not this one
            try:
                sock.sendall(b"x")
            except OSError:
                break
            time.sleep(0.1)
        closed = _closed_by_server(sock)
    assert closed


def test_a_silent_connection_is_closed_without_an_answer(quick_server):
    sock = _stalled(_port(quick_server), b"")
    with sock:
        assert sock.recv(1) == b""  # closed, with nothing said


def _numerals_upload() -> tuple[bytes, bytes]:
    """Headers and body of a small, valid numerals request."""
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 60, 3), 255, np.uint8)).save(buffer, format="PNG")
    body = (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + buffer.getvalue() + b"\r\n--b--\r\n")
    head = (b"POST /api/numerals/read HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n\r\n" % len(body))
    return head, body


def _send_slowly(sock: socket.socket, body: bytes, pieces: int = 6, pause_s: float = 0.2) -> bytes:
    """Send ``body`` in pieces with pauses (each well within the quick server's 0.5 s, all of them
    longer), then read the answer to the end."""
    size = len(body) // pieces + 1
    for index in range(0, len(body), size):
        time.sleep(pause_s)
        sock.sendall(body[index:index + size])
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_slow_but_steady_upload_is_not_cut_off(quick_server):
    """The body timeout is the longest silence, not the whole upload."""
    head, body = _numerals_upload()
    sock = _stalled(_port(quick_server), head)
    with sock:
        data = _send_slowly(sock, body)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]


def test_the_next_request_on_a_connection_gets_its_own_body_timeout(quick_server):
    """After an answer to a request whose body was still coming, that body gets one timeout; the
    next request on the same connection must not inherit that deadline."""
    head, body = _numerals_upload()
    sock = _stalled(_port(quick_server), b"GET /api/health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    with sock:
        first = b""
        while not first.endswith(b"}"):
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"cde" + head)  # the rest of the first body, then the next request
        data = _send_slowly(sock, body)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]


@pytest.mark.parametrize("payload", [b"NOT HTTP AT ALL\r\n\r\n",
                                     b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000],
                         ids=["garbage", "endless-headers"])
def test_bytes_that_are_not_http_get_a_json_400(quick_server, payload):
    """uvicorn answers these itself, in plain text: here they are JSON like every other error."""
    sock = _stalled(_port(quick_server), payload)
    with sock:
        status, body = _answer(sock)
    assert status == 400 and body["error"]["code"] == "bad_request"
