"""Every error the API returns is JSON: ``{"error": {"code": "...", "message": "..."}}``.

Messages name things (the gallery file by its name, the upload by its form field), never the
server's paths: :func:`public_message` scrubs every message at this boundary, whichever error
type it came from, because a path in an exception's text can come from any layer below.
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus
from pathlib import PureWindowsPath
from typing import Any

log = logging.getLogger(__name__)

#: Headers every response carries, the raw ones written outside the app included: cross-origin
#: isolation (the page uses SharedArrayBuffer for WASM threads) and the usual hardening.
SECURITY_HEADERS = [(b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-embedder-policy", b"require-corp"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer")]


class ApiError(Exception):
    """An error with its HTTP status, a stable machine-readable code and a one-line message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


#: An absolute file-system path in a message: quoted (may hold spaces), or bare (up to a space,
#: quote, comma, colon...). POSIX, home-relative or Windows; at least two components, so a
#: lone "/" or "/etc" is left alone; the API's own URL paths are not file paths.
_QUOTED_PATH = re.compile(r"""(['"])((?:~|[A-Za-z]:)?[/\\](?:[^'"/\\]+[/\\])+[^'"]*)\1""")
_BARE_PATH = re.compile(r"""(?<![\w/\\.~:-])(?!/(?:api|static|vendor)/)((?:~|[A-Za-z]:)?[/\\]"""
                        r"""(?:[^\s'"/\\:,;()<>|]+[/\\])+[^\s'"/\\:,;()<>|]*)""")


def _name_of(path: str) -> str:
    """The last component of a path (a folder's name when it ends with a separator)."""
    return PureWindowsPath(path.rstrip("/\\.")).name or path


def public_message(message: str) -> str:
    """``message`` with every absolute path replaced by its last component.

    Example:
        >>> public_message("/srv/slimvision/people.sqlite: not a usable gallery")
        'people.sqlite: not a usable gallery'
        >>> public_message("upload 'image': not an image; see /api/health")
        "upload 'image': not an image; see /api/health"
    """
    message = _QUOTED_PATH.sub(lambda match: f"{match[1]}{_name_of(match[2])}{match[1]}", message)
    return _BARE_PATH.sub(lambda match: _name_of(match[1]), message)


def exception_message(exc: BaseException) -> str:
    """An exception's one-line message for a client. Our typed errors keep the path they were
    given apart (``path``, ``problem``): a relative path with folders is cut to its name too."""
    path, problem = getattr(exc, "path", None), getattr(exc, "problem", None)
    if isinstance(path, str) and isinstance(problem, str) and ("/" in path or "\\" in path):
        return public_message(f"{_name_of(path)}: {problem}")
    return public_message(str(exc))


def error_body(code: str, message: str) -> dict[str, Any]:
    """The JSON of every error answer (the message scrubbed of server paths)."""
    return {"error": {"code": code, "message": public_message(message)}}


def json_error_bytes(status: int, code: str, message: str, extra_headers: tuple[str, ...] = ()) -> bytes:
    """A whole HTTP/1.1 error response (JSON body, ``Connection: close``) for writing to a socket
    outside the ASGI app: before a request exists, or instead of the app's answer."""
    body = json.dumps(error_body(code, message)).encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "content-type: application/json",
             f"content-length: {len(body)}", "connection: close", *extra_headers,
             *(f"{name.decode()}: {value.decode()}" for name, value in SECURITY_HEADERS)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def install_handlers(app: Any) -> None:
    """JSON for our errors, for FastAPI's validation errors, for 404/405, and for anything unexpected
    (whose details go to the log, not to the client)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from slimvision.errors import ImageTooLargeError, InputError, SlimvisionError, UnsupportedImageError

    @app.exception_handler(ApiError)
    async def api_error(request: Any, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), exc.status, headers=exc.headers)

    # Our own errors, by type. Starlette picks the handler of the nearest class in the exception's
    # MRO, so the two image errors win over InputError, and InputError over SlimvisionError.
    for error_type, status, code in ((ImageTooLargeError, 413, "too_large"),
                                     (UnsupportedImageError, 415, "unsupported_media_type"),
                                     (InputError, 400, "bad_input"),
                                     (SlimvisionError, 422, "cannot_process")):
        app.add_exception_handler(error_type, _json_handler(status, code))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Any, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(part) for part in error['loc'][1:]) or 'request'}: {error['msg']}"
                             for error in exc.errors())
        return JSONResponse(error_body("invalid_request", problems), 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Any, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Any, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "the server failed on this request; see its log"), 500)


def _json_handler(status: int, code: str) -> Any:
    """An exception handler answering ``status`` with ``code`` and the exception's one-line message."""
    from fastapi.responses import JSONResponse

    async def handler(request: Any, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(code, exception_message(exc)), status)

    return handler
