"""The FastAPI application: security headers, a request-size limit, the page, the onnxruntime-web
files, and the API: one router per system (:mod:`slimvision.server.style`, ``faces``, ``gan``,
``vae``, ``numerals``), ``health`` and ``models`` (the registry's listing), over the helpers they
share (:mod:`slimvision.server.shared`).

Example (tests and notebooks; the CLI is ``slimvision serve``):
    >>> url, stop = serve_in_thread(ServerSettings())      # doctest: +SKIP
    >>> httpx.get(f"{url}/api/health").json()["status"]      # doctest: +SKIP
    'ok'
    >>> stop()                                               # doctest: +SKIP
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from slimvision import __version__
from slimvision.errors import SlimvisionError
from slimvision.server.errors import SECURITY_HEADERS, ApiError, error_body, install_handlers
from slimvision.server.jobs import JobQueue
from slimvision.server.settings import ServerSettings
from slimvision.server.shared import Models, compressed_response

STATIC_FOLDER = Path(__file__).resolve().parent / "static"
#: The onnxruntime-web files the page may load: the WASM build, and the WebGPU build for
#: browsers that have a GPU adapter (in 1.30 ``ort.webgpu.min.mjs`` runs on the asyncify
#: WASM binary). Nothing else from node_modules is reachable.
ORT_FILES = frozenset({"ort.wasm.min.mjs", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs",
                       "ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.wasm",
                       "ort-wasm-simd-threaded.asyncify.mjs"})
_MEDIA_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
                ".onnx": "application/octet-stream", ".html": "text/html; charset=utf-8", ".css": "text/css"}


def create_app(settings: ServerSettings | None = None) -> Any:
    """The ASGI app for ``settings`` (models load on first use, not here)."""
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware

    from slimvision.server import faces, gan, health, models, numerals, style, vae

    settings = settings or ServerSettings()
    # FastAPI's /docs and /redoc pages load their scripts from a CDN, which this project never
    # depends on at run time: the schema itself is served at /openapi.json.
    app = FastAPI(title="slimvision", version=__version__, docs_url=None, redoc_url=None,
                  description="Small, fast image models: style transfer, faces, DCGAN, medical VAE, Roman numerals.")
    app.state.settings = settings
    app.state.jobs = JobQueue(settings.workers, settings.queue_size, settings.timeout_s)
    app.state.models = Models(settings)
    install_handlers(app)
    _add_page_routes(app, settings)
    for system in (health, models, style, faces, gan, vae, numerals):  # the order openapi.json lists them in
        # The routers' own routes, as they are: FastAPI 0.16x's include_router nests a router as
        # one entry, which would hide the API routes from app.routes (HEAD-as-GET, tests, tools).
        app.router.routes.extend(system.router.routes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization"])
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    app.add_middleware(HeadAsGet)
    app.add_middleware(SecurityHeaders)
    app.router.add_event_handler("shutdown", app.state.jobs.shutdown)
    return app


# --------------------------------------------------------------------------- middleware
class SecurityHeaders:
    """Adds the cross-origin isolation and hardening headers to every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeadAsGet:
    """HEAD answered as GET without the body, for every GET route (FastAPI registers GET alone,
    so HEAD was a 405). The headers, Content-Length included, are the GET's."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message: dict) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


class BodyLimit:
    """413 for request bodies over ``limit`` bytes: at once from Content-Length, else while they stream.

    A body that grows past the limit mid-stream makes the app fail however it reads it; that
    response is dropped and replaced by the 413.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(send)
        state = {"received": 0, "over": False, "started": False}

        async def counted_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit:
                    state["over"] = True
                    raise ApiError(413, "too_large", self._message())
            return message

        async def guarded_send(message: dict) -> None:
            if not state["over"]:
                state["started"] = True
                await send(message)

        await self.app(scope, counted_receive, guarded_send)
        if state["over"] and not state["started"]:
            await self._refuse(send)

    def _message(self) -> str:
        return f"the upload is larger than the server's limit of {self.limit / 2**20:g} MB"

    async def _refuse(self, send: Callable) -> None:
        body = json.dumps(error_body("too_large", self._message())).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")] + SECURITY_HEADERS})
        await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- the page
def _add_page_routes(app: Any, settings: ServerSettings) -> None:
    @app.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        page = STATIC_FOLDER / "index.html"
        if not page.is_file():
            raise ApiError(404, "not_found", "the page (static/index.html) is missing from this install")
        return static_file(page, request.headers.get("accept-encoding", ""))

    @app.get("/static/{name:path}", include_in_schema=False)
    def static(name: str, request: Request) -> Response:
        return static_file(_inside(STATIC_FOLDER, name), request.headers.get("accept-encoding", ""))

    @app.get("/vendor/ort/{name}", include_in_schema=False)
    def ort_runtime(name: str, request: Request) -> Response:
        if name not in ORT_FILES:
            raise ApiError(404, "not_found", f"no runtime file {name!r}")
        path = settings.web_assets / name
        if not path.is_file():
            raise ApiError(404, "not_found", f"onnxruntime-web is not installed on the server ({name} is missing): "
                                             "run 'make web' (npm install in web/) or set SLIMVISION_WEB_ASSETS")
        return static_file(path, request.headers.get("accept-encoding", ""), cache="public, max-age=86400")


def _inside(folder: Path, name: str) -> Path:
    """``folder / name`` if that is a file inside ``folder`` (no ``..`` escapes), else 404.

    Any name the file system cannot take (a NUL byte, a component too long) is a file that is
    not there, not a server failure."""
    try:
        path = (folder / name).resolve()
        found = path.is_relative_to(folder.resolve()) and path.is_file()
    except (OSError, ValueError):
        found = False
    if not found:
        raise ApiError(404, "not_found", f"no file {name!r}")
    return path


def static_file(path: Path, accept_encoding: str, cache: str = "no-cache") -> Any:
    """A file's bytes, gzipped when the client accepts it (the WASM runtime shrinks ~4x)."""
    key = (str(path), path.stat().st_mtime_ns)
    media_type = _MEDIA_TYPES.get(path.suffix, "application/octet-stream")
    return compressed_response(_file_bytes(*key), media_type, accept_encoding, cache, key)


@lru_cache(maxsize=32)
def _file_bytes(path: str, mtime_ns: int) -> bytes:
    return Path(path).read_bytes()


# --------------------------------------------------------------------------- running it
def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one chosen by the OS), with a one-line error if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SlimvisionError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _server(settings: ServerSettings, log_level: str) -> Any:
    """uvicorn with the connection guards of :mod:`slimvision.server.connections` in place of
    ``limit_concurrency``: that counted stalled connections too, so a few dozen of them turned
    every other request into a plain-text 503. Model work is bounded by the job queue (429)."""
    import uvicorn

    from slimvision.server.connections import ConnectionLimits, guarded_protocol

    limits = ConnectionLimits(header_timeout_s=settings.header_timeout_s, body_timeout_s=settings.body_timeout_s,
                              per_client=settings.max_connections_per_client, total=settings.max_connections)
    config = uvicorn.Config(create_app(settings), log_level=log_level, timeout_graceful_shutdown=5,
                            http=guarded_protocol(limits), ws="none", backlog=settings.max_connections)
    return uvicorn.Server(config)


def serve(settings: ServerSettings, on_ready: Callable[[str], None] = print, log_level: str = "info") -> None:
    """Serve until interrupted."""
    sock = bind(settings.host, settings.port)
    on_ready(url_of(sock))
    _server(settings, log_level).run(sockets=[sock])


def serve_in_thread(settings: ServerSettings | None = None, log_level: str = "warning") -> tuple[str, Callable[[], None]]:
    """Start a server on a background thread; returns its URL and a function that stops it."""
    settings = settings or ServerSettings()
    sock = bind(settings.host, settings.port)
    server = _server(settings, log_level)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="slimvision-serve")
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.02)
    if not server.started:
        raise SlimvisionError("the server did not start; see the log above")

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        sock.close()

    return url_of(sock), stop
