"""``slimvision serve``: the web page and the JSON API (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from slimvision.cli.arguments import bounded, non_negative_int, port, positive_float, positive_int
from slimvision.errors import SlimvisionError


def add_commands(groups: argparse._SubParsersAction) -> None:
    serve = groups.add_parser(
        "serve", help="the web page (models run in your browser) and a JSON API",
        description="Serve the page, where style transfer runs in the browser (onnxruntime-web), and a JSON API "
                    "for faces, DCGAN samples, VAE denoising and Roman numerals. Binds to 127.0.0.1 on a free "
                    "port unless told otherwise; the API schema is at /openapi.json.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=port(), default=0, help="port (default 0: a free one)")
    serve.add_argument("--admin-token", default=None,
                       help="token that allows gallery changes (default: $SLIMVISION_ADMIN_TOKEN; none: read-only)")
    serve.add_argument("--gallery", type=Path, default=Path("slimvision-gallery.sqlite"),
                       help="face gallery file (default ./slimvision-gallery.sqlite, made on the first enrolment)")
    serve.add_argument("--face-model", default="face-embedder-dlib-resnet", metavar="NAME",
                       help="the registered face embedder the face routes use (slimvision models; default "
                            "face-embedder-dlib-resnet); the gallery must have been made with it")
    serve.add_argument("--max-upload-mb", type=positive_float("--max-upload-mb", 4096), default=20.0,
                       help="largest request body (default 20)")
    serve.add_argument("--max-pixels", type=positive_float("--max-pixels", 1000), default=25.0,
                       help="largest image, megapixels (default 25)")
    serve.add_argument("--workers", type=positive_int("--workers", 256), default=2, help="model runs at once (default 2)")
    serve.add_argument("--queue", type=non_negative_int("--queue", 10_000), default=8,
                       help="requests that may wait; more get 429 (default 8)")
    serve.add_argument("--timeout", type=positive_float("--timeout", 86_400), default=60.0,
                       help="seconds before a request gets 504 (default 60)")
    serve.add_argument("--max-client-connections", type=bounded("--max-client-connections", int, 8, 10_000), default=16,
                       help="connections one client address may hold (default 16; at least 8, for browsers)")
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="allow API calls from pages of this origin (repeatable; default: none)")
    serve.set_defaults(run=run_serve)


def _check_face_model(name: str) -> None:
    """A registered face embedder (an unknown name is an error naming the close ones), before the server starts."""
    from slimvision.inference.batch_tasks import FACE_PIPELINE, face_embedders
    from slimvision.registry import ARTIFACTS

    if ARTIFACTS.spec(name).pipeline != FACE_PIPELINE:
        raise SlimvisionError(f"--face-model {name}: not a face embedder; choose from {', '.join(face_embedders())}")


def run_serve(args: argparse.Namespace) -> int:
    try:
        from slimvision.server.app import serve
    except ImportError as exc:
        raise SlimvisionError(f"slimvision serve needs the web extra ({exc.name} is missing): "
                              "pip install 'slimvision[web]'") from None
    from slimvision.server.settings import ADMIN_TOKEN_ENV, ServerSettings

    token = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV) or None
    _check_face_model(args.face_model)
    settings = ServerSettings(host=args.host, port=args.port, admin_token=token, gallery=args.gallery,
                              face_model=args.face_model,
                              max_upload_mb=args.max_upload_mb, max_pixels=int(args.max_pixels * 1e6),
                              workers=args.workers, queue_size=args.queue, timeout_s=args.timeout,
                              max_connections_per_client=args.max_client_connections,
                              max_connections=max(512, args.max_client_connections),
                              cors_origins=tuple(args.cors_origin))
    if not _is_loopback(args.host):
        print(f"warning: listening on {args.host}: other machines can reach this server", file=sys.stderr)
    if not settings.web_assets.is_dir():
        print(f"warning: {settings.web_assets} is missing, so the page cannot run models in the browser "
              "(it will use the server); run 'make web'", file=sys.stderr)

    def ready(url: str) -> None:
        print(f"slimvision is serving on {url}  (API schema: {url}/openapi.json; Ctrl+C stops it)", flush=True)

    serve(settings, on_ready=ready)
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
