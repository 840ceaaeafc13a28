"""What a server is started with: address, limits and the admin token."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from slimvision.config import BaseConfig

#: The environment variable that can hold the admin token instead of ``--admin-token``
#: (keeps it out of the process list).
ADMIN_TOKEN_ENV = "SLIMVISION_ADMIN_TOKEN"
#: Where ``npm install`` puts onnxruntime-web in a source checkout; SLIMVISION_WEB_ASSETS overrides.
REPO_WEB_FOLDER = Path(__file__).resolve().parents[3] / "web"
WEB_ASSETS_ENV = "SLIMVISION_WEB_ASSETS"


def default_web_assets() -> Path:
    """onnxruntime-web's ``dist`` folder: $SLIMVISION_WEB_ASSETS, else the checkout's ``web/node_modules``."""
    override = os.environ.get(WEB_ASSETS_ENV)
    return Path(override) if override else REPO_WEB_FOLDER / "node_modules" / "onnxruntime-web" / "dist"


@dataclass
class ServerSettings(BaseConfig):
    """Attributes:
        host: the address to bind; loopback unless asked otherwise, so nothing is exposed by default.
        port: 0 picks a free port.
        admin_token: needed (as ``Authorization: Bearer ...``) to change the face gallery;
            None disables gallery changes altogether.
        max_upload_mb: largest request body.
        max_pixels: largest decoded image (width x height), checked from the header before decoding.
        max_side: stylized images are downscaled to this longest side first.
        workers: model runs at once (each uses ONNX Runtime's own threads).
        queue_size: requests allowed to wait for a worker; more get 429.
        timeout_s: a request waiting or running longer gets 504.
        header_timeout_s: a client must send a request's headers within this long (else a JSON
            408 and the connection is closed; see :mod:`slimvision.server.connections`).
        body_timeout_s: the longest silence allowed while a request body arrives (a JSON 408).
        max_connections_per_client: connections one client address may hold; over it, its
            connection that has waited longest for the client is closed to make room.
        max_connections: connections the server holds in all.
        cors_origins: origins allowed to call the API from other pages (none by default).
        gallery: the SQLite face gallery file (created on the first enrolment).
        face_model: the registered face embedder the face routes use (``slimvision models``); a
            gallery made with another one is refused.
        web_assets: onnxruntime-web's ``dist`` folder.
    """

    host: str = "127.0.0.1"
    port: int = 0
    admin_token: str | None = None
    max_upload_mb: float = 20.0
    max_pixels: int = 25_000_000
    max_side: int = 1024
    workers: int = 2
    queue_size: int = 8
    timeout_s: float = 60.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    max_connections_per_client: int = 16
    max_connections: int = 512
    cors_origins: tuple[str, ...] = ()
    gallery: Path = field(default_factory=lambda: Path("slimvision-gallery.sqlite"))
    face_model: str = "face-embedder-dlib-resnet"
    web_assets: Path = field(default_factory=default_web_assets)

    def validate(self) -> None:
        super().validate()
        self.require_positive("max_upload_mb", "timeout_s", "header_timeout_s", "body_timeout_s")
        self.require_at_least(1, "max_pixels", "workers")
        # A browser opens 6-8 connections per origin, and a page may be open in a few tabs.
        self.require_at_least(8, "max_connections_per_client")
        self.require_at_least(self.max_connections_per_client, "max_connections")
        self.require_at_least(0, "queue_size", "port")
        self.require_at_least(64, "max_side")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)
