"""What every router of the API shares: the loaded pipelines, reading and checking requests,
and writing responses (PNG, data URLs, gzip).

Handlers only parse and check the request; the model work runs on the
:class:`~slimvision.server.jobs.JobQueue`. Uploads are read into memory (the body limit bounds
them), sniffed from their bytes, and decoded with the pixel limit; nothing a client sends is used
as a file-system path.
"""

from __future__ import annotations

import base64
import gzip
import hmac
import threading
from typing import Annotated, Any

import numpy as np
from fastapi import Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import UploadFile as StarletteUpload

from slimvision.server.errors import ApiError
from slimvision.server.settings import ServerSettings

#: How every box in the API is written: [x0, y0, x1, y1] in pixels of the image as loaded (after
#: EXIF rotation), origin top-left, x1 and y1 the exclusive right and bottom edges. Each JSON
#: answer that holds boxes says so at its top level.
BOX_FORMAT = "xyxy"
#: The admin token, as openapi.json declares it (the gallery-changing routes require it).
ADMIN_TOKEN = HTTPBearer(scheme_name="adminToken", auto_error=False,
                         description="The server's admin token (`slimvision serve --admin-token`, or "
                                     "$SLIMVISION_ADMIN_TOKEN), sent as `Authorization: Bearer <token>`. "
                                     "Gallery changes are refused (403) when the server has none.")
ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no admin token, or a wrong one"},
    403: {"description": "the server was started without an admin token: gallery changes are off"}}


class Models:
    """Registered artifacts (``slimvision models``), each created by name on first use with
    ``ARTIFACTS.create`` and shared by all requests (ONNX Runtime sessions are thread-safe)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._lock = threading.RLock()  # a cached build may load a model
        self._loaded: dict[str, Any] = {}
        self._derived: dict[tuple, Any] = {}

    def get(self, name: str) -> Any:
        """The pipeline of the registered artifact ``name``, loaded once."""
        with self._lock:
            if name not in self._loaded:
                from slimvision.registry import ARTIFACTS

                self._loaded[name] = ARTIFACTS.create(name)
            return self._loaded[name]

    def cached(self, key: tuple, build: Any) -> Any:
        """``build()`` once per key, shared by all requests (e.g. the browser-ready graphs)."""
        with self._lock:
            if key not in self._derived:
                self._derived[key] = build()
            return self._derived[key]


# --------------------------------------------------------------------------- requests
def settings_of(request: Request) -> ServerSettings:
    return request.app.state.settings


def models_of(request: Request) -> Models:
    return request.app.state.models


async def run_job(request: Request, function: Any, *args: Any) -> Any:
    """Run the model work on the job queue (429 when it is full, 503 past the time limit)."""
    return await request.app.state.jobs.run(function, *args)


async def read_upload(upload: Any, field: str) -> tuple[bytes, str]:
    """The bytes of one uploaded file and a name for errors (the field, not the client's file name)."""
    if not isinstance(upload, StarletteUpload):
        raise ApiError(422, "invalid_request", f"{field}: expected a file upload")
    data = await upload.read()
    if not data:
        raise ApiError(400, "bad_input", f"{field}: the uploaded file is empty")
    return data, f"upload '{field}'"


def decode(data: bytes, name: str, settings: ServerSettings, min_side: int = 16) -> np.ndarray:
    """An upload as RGB pixels; bad bytes raise typed InputErrors that the handlers answer 400, 413 or 415."""
    from slimvision.io.images import decode_image

    return decode_image(data, name, max_pixels=settings.max_pixels, min_side=min_side)


def require_admin(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Security(ADMIN_TOKEN)]) -> None:
    """A dependency of the gallery-changing routes: the request must carry the admin token."""
    token = settings_of(request).admin_token
    if token is None:
        raise ApiError(403, "forbidden", "gallery changes are disabled: start the server with --admin-token "
                                         "(or SLIMVISION_ADMIN_TOKEN) to allow them")
    given = credentials.credentials.strip() if credentials is not None else ""
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "unauthorized", "gallery changes need 'Authorization: Bearer <admin token>'",
                       headers={"WWW-Authenticate": "Bearer"})


# --------------------------------------------------------------------------- responses
def png(image: np.ndarray, headers: dict[str, str] | None = None) -> Response:
    from slimvision.io.png import encode_png

    return Response(encode_png(image), media_type="image/png", headers=headers)


def data_url(image: np.ndarray) -> str:
    from slimvision.io.png import encode_png

    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode()


_GZIPPED: dict[tuple, bytes] = {}  # a handful of files and model graphs, each compressed once


def _gzipped(key: tuple, data: bytes) -> bytes:
    if key not in _GZIPPED:
        _GZIPPED[key] = gzip.compress(data, compresslevel=9, mtime=0)
    return _GZIPPED[key]


def compressed_response(data: bytes, media_type: str, accept_encoding: str, cache: str, key: tuple) -> Any:
    """``data`` gzipped (once per ``key``) when the client accepts it and it is over 1 KB."""
    headers = {"Cache-Control": cache, "Vary": "Accept-Encoding"}
    if "gzip" in accept_encoding.lower() and len(data) > 1024:
        headers["Content-Encoding"] = "gzip"
        data = _gzipped(key, data)
    return Response(data, media_type=media_type, headers=headers)
