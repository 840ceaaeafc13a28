"""The JSON API: style transfer (models for the browser, and a server fallback), faces, DCGAN
samples, VAE denoising and Roman numerals.

Handlers only parse and check the request; the model work runs on the :class:`~slimvision.server.jobs.JobQueue`.
Uploads are read into memory (the body limit bounds them), sniffed from their bytes, and
decoded with the pixel limit; nothing a client sends is used as a file-system path.
"""

from __future__ import annotations

import base64
import hmac
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, File, Form, Query, Request, Security, UploadFile
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import UploadFile as StarletteUpload

from slimvision import __version__
from slimvision.server.errors import ApiError
from slimvision.server.settings import ServerSettings

SAMPLES_FOLDER = Path(__file__).resolve().parents[1] / "samples"
#: The style models the page can run: name -> kind. The fast bundle is the page's default.
STYLE_MODELS = {"slimvision-fast-v3": "fast", "magenta-arbitrary-v1-fp32": "teacher"}
DEFAULT_STYLE_MODEL = "slimvision-fast-v3"
MAX_STYLES = 4
MAX_GAN_SAMPLES = 64
#: How every box in the API is written: [x0, y0, x1, y1] in pixels of the image as loaded (after
#: EXIF rotation), origin top-left, x1 and y1 the exclusive right and bottom edges. Each JSON
#: answer that holds boxes says so at its top level.
BOX_FORMAT = "xyxy"
#: The admin token, as openapi.json declares it (the gallery-changing routes require it).
ADMIN_TOKEN = HTTPBearer(scheme_name="adminToken", auto_error=False,
                         description="The server's admin token (`slimvision serve --admin-token`, or "
                                     "$SLIMVISION_ADMIN_TOKEN), sent as `Authorization: Bearer <token>`. "
                                     "Gallery changes are refused (403) when the server has none.")
_ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no admin token, or a wrong one"},
    403: {"description": "the server was started without an admin token: gallery changes are off"}}


class Models:
    """Each model is loaded on first use and shared by all requests (ONNX Runtime sessions are thread-safe)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._lock = threading.RLock()  # a cached build may load a model
        self._loaded: dict[str, Any] = {}
        self._derived: dict[tuple, Any] = {}

    def get(self, name: str) -> Any:
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._load(name)
            return self._loaded[name]

    def cached(self, key: tuple, build: Any) -> Any:
        """``build()`` once per key, shared by all requests (e.g. the browser-ready graphs)."""
        with self._lock:
            if key not in self._derived:
                self._derived[key] = build()
            return self._derived[key]

    def _load(self, name: str) -> Any:
        if name in STYLE_MODELS:
            from slimvision.inference.style import StyleTransferPipeline

            return StyleTransferPipeline(name)
        if name == "faces":
            from slimvision.inference.faces import FaceRecognizer

            return FaceRecognizer()
        if name == "gan":
            from slimvision.inference.gan import DEMO_GENERATOR, GANSampler

            return GANSampler(DEMO_GENERATOR)
        if name == "vae":
            from slimvision.inference.vae import DEMO_DENOISER, MedicalVAE

            return MedicalVAE(DEMO_DENOISER)
        if name == "numerals":
            from slimvision.inference.numerals import NumeralReader

            return NumeralReader()
        raise KeyError(name)


def add_routes(app: Any) -> None:
    for add in (_health_routes, _style_routes, _face_routes, _gan_routes, _vae_routes, _numeral_routes):
        add(app)


# --------------------------------------------------------------------------- helpers
def _settings(request: Request) -> ServerSettings:
    return request.app.state.settings


async def _run(request: Request, function: Any, *args: Any) -> Any:
    return await request.app.state.jobs.run(function, *args)


async def _read_upload(upload: UploadFile, field: str) -> tuple[bytes, str]:
    """The bytes of one uploaded file and a name for errors (the field, not the client's file name)."""
    if not isinstance(upload, StarletteUpload):
        raise ApiError(422, "invalid_request", f"{field}: expected a file upload")
    data = await upload.read()
    if not data:
        raise ApiError(400, "bad_input", f"{field}: the uploaded file is empty")
    return data, f"upload '{field}'"


def _decode(data: bytes, name: str, settings: ServerSettings, min_side: int = 16) -> np.ndarray:
    """An upload as RGB pixels; bad bytes raise typed InputErrors that the handlers answer 400, 413 or 415."""
    from slimvision.io.images import decode_image

    return decode_image(data, name, max_pixels=settings.max_pixels, min_side=min_side)


def _png(image: np.ndarray, headers: dict[str, str] | None = None) -> Response:
    from slimvision.io.png import encode_png

    return Response(encode_png(image), media_type="image/png", headers=headers)


def _data_url(image: np.ndarray) -> str:
    from slimvision.io.png import encode_png

    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode()


def require_admin(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Security(ADMIN_TOKEN)]) -> None:
    """A dependency of the gallery-changing routes: the request must carry the admin token."""
    token = _settings(request).admin_token
    if token is None:
        raise ApiError(403, "forbidden", "gallery changes are disabled: start the server with --admin-token "
                                         "(or SLIMVISION_ADMIN_TOKEN) to allow them")
    given = credentials.credentials.strip() if credentials is not None else ""
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "unauthorized", "gallery changes need 'Authorization: Bearer <admin token>'",
                       headers={"WWW-Authenticate": "Bearer"})


# --------------------------------------------------------------------------- health
def _health_routes(app: Any) -> None:
    @app.get("/api/health", tags=["server"], summary="Is the server up, and how busy is it?")
    def health(request: Request) -> dict[str, Any]:
        jobs = request.app.state.jobs
        return {"status": "ok", "version": __version__, "jobs_in_progress": jobs.active, "capacity": jobs.capacity}


# --------------------------------------------------------------------------- style transfer
def _style_routes(app: Any) -> None:
    @app.get("/api/style/models", tags=["style"], summary="The style models the page can run in the browser")
    def style_models(request: Request) -> dict[str, Any]:
        return {"default": DEFAULT_STYLE_MODEL,
                "models": [_model_entry(request.app.state.models, name, kind) for name, kind in STYLE_MODELS.items()]}

    @app.get("/api/style/models/{name}/{part}.onnx", tags=["style"], summary="A browser-ready ONNX graph")
    def style_graph(name: str, part: str, request: Request) -> Response:
        from slimvision.server.app import compressed_response

        if name not in STYLE_MODELS or part not in ("predictor", "transform"):
            raise ApiError(404, "not_found", f"no style graph {name}/{part}.onnx (models: {', '.join(STYLE_MODELS)})")
        data = _browser_graph(request.app.state.models, name, part)
        return compressed_response(data, "application/octet-stream", request.headers.get("accept-encoding", ""),
                                   "public, max-age=3600", key=("style", name, part, len(data)))

    @app.get("/api/style/samples", tags=["style"], summary="The bundled sample photos and paintings")
    def style_samples() -> dict[str, Any]:
        return {kind: [{"name": path.name, "url": f"/api/samples/{kind}/{path.name}"} for path in _sample_files(kind)]
                for kind in ("content", "styles")}

    @app.get("/api/samples/{kind}/{name}", tags=["style"], summary="One bundled sample image")
    def sample(kind: str, name: str) -> Response:
        from fastapi.responses import FileResponse

        files = {path.name: path for path in _sample_files(kind)} if kind in ("content", "styles") else {}
        if name not in files:
            raise ApiError(404, "not_found", f"no sample {kind}/{name}")
        return FileResponse(files[name], media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})

    @app.post("/api/style/stylize", tags=["style"], response_class=Response,
              responses={200: {"content": {"image/png": {}}, "description": "the stylized image"}},
              summary="Stylize on the server (the page's fallback when the browser cannot run the model)")
    async def stylize(request: Request, content: Annotated[UploadFile, File(description="the photo")],
                      style: Annotated[list[UploadFile], File(description="one or more style images")],
                      weights: Annotated[str | None, Form(description="blend weights, e.g. 0.7,0.3")] = None,
                      strength: Annotated[float, Form(ge=0, le=1)] = 1.0,
                      preserve_color: Annotated[bool, Form()] = False,
                      model: Annotated[str, Form()] = DEFAULT_STYLE_MODEL) -> Response:
        settings = _settings(request)
        if model not in STYLE_MODELS:
            raise ApiError(422, "invalid_request", f"model: {model!r} is not one of {', '.join(STYLE_MODELS)}")
        if not 1 <= len(style) <= MAX_STYLES:
            raise ApiError(422, "invalid_request", f"style: give 1 to {MAX_STYLES} style images, got {len(style)}")
        blend = _parse_weights(weights, len(style))
        content_bytes = await _read_upload(content, "content")
        style_bytes = [await _read_upload(upload, f"style {index + 1}") for index, upload in enumerate(style)]

        def work() -> tuple[np.ndarray, float]:
            pipeline = request.app.state.models.get(model)
            photo = _decode(*content_bytes, settings)
            paintings = [_decode(*item, settings) for item in style_bytes]
            started = time.perf_counter()
            result = pipeline(photo, paintings, blend, strength, preserve_color, max_side=settings.max_side)
            return result, (time.perf_counter() - started) * 1000

        image, milliseconds = await _run(request, work)
        return _png(image, {"X-Inference-Ms": f"{milliseconds:.1f}", "X-Model": model})


def _parse_weights(text: str | None, count: int) -> list[float] | None:
    if text is None or not text.strip():
        return None
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise ApiError(422, "invalid_request", f"weights: expected numbers separated by commas, got {text!r}") from None
    if len(values) != count or any(not np.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise ApiError(422, "invalid_request", f"weights: need {count} non-negative numbers with a positive sum, "
                                               f"got {text!r}")
    return values


def _sample_files(kind: str) -> list[Path]:
    return sorted(path for path in (SAMPLES_FOLDER / kind).glob("*") if path.suffix.lower() in (".jpg", ".jpeg", ".png"))


def _browser_graph(models: Models, name: str, part: str) -> bytes:
    """The graph the page downloads (built once per server: the teacher's is a graph rewrite)."""
    return models.cached(("graph", name, part), lambda: _build_browser_graph(models, name, part))


def _build_browser_graph(models: Models, name: str, part: str) -> bytes:
    """The graph the page downloads. The fast bundle ships fp16-stored weights, which onnxruntime-web
    reads as they are (half the download); the teacher's transform graph is the one the server
    runs for that artifact (spatial dimensions freed, weights dequantized)."""
    pipeline = models.get(name)
    artifact = pipeline.artifact
    if part == "predictor":
        return artifact.predictor.path().read_bytes()
    if STYLE_MODELS[name] == "fast":
        return artifact.transform.path().read_bytes()
    return pipeline._transform_graph()[0]


def _model_entry(models: Models, name: str, kind: str) -> dict[str, Any]:
    from slimvision.inference.style import STYLE_DIM
    from slimvision.inference.style_tiling import SIZE_MULTIPLE

    artifact = models.get(name).artifact
    parts = {part: {"url": f"/api/style/models/{name}/{part}.onnx", "bytes": len(_browser_graph(models, name, part))}
             for part in ("predictor", "transform")}
    return {"name": name, "kind": kind, "description": artifact.description, **parts,
            "style_size": artifact.style_size, "size_multiple": SIZE_MULTIPLE, "style_dim": STYLE_DIM,
            "layout": artifact.layout, "value_range": list(artifact.value_range)}


# --------------------------------------------------------------------------- faces
def _face_routes(app: Any) -> None:
    @app.post("/api/faces/verify", tags=["faces"], summary="Are the main faces of two photos the same person?")
    async def verify(request: Request, a: Annotated[UploadFile, File()], b: Annotated[UploadFile, File()]) -> dict:
        settings = _settings(request)
        first, second = await _read_upload(a, "a"), await _read_upload(b, "b")

        def work() -> dict[str, Any]:
            recognizer = request.app.state.models.get("faces")
            photos = [_decode(*item, settings) for item in (first, second)]
            faces = [recognizer.main_face(photo, item[1]) for photo, item in zip(photos, (first, second))]
            result = recognizer.compare(faces[0].descriptor, faces[1].descriptor)
            return {"same": result.same_person, "distance": round(result.distance, 4),
                    "similarity": round(result.similarity, 4), "threshold": result.threshold,
                    "box_format": BOX_FORMAT,
                    "boxes": {"a": _box(faces[0].face.box, photos[0]), "b": _box(faces[1].face.box, photos[1])}}

        return await _run(request, work)

    @app.post("/api/faces/identify", tags=["faces"], summary="Who of the gallery is in this photo?")
    async def identify(request: Request, image: Annotated[UploadFile, File()]) -> dict:
        settings = _settings(request)
        upload = await _read_upload(image, "image")

        def work() -> dict[str, Any]:
            recognizer = request.app.state.models.get("faces")
            photo = _decode(*upload, settings)
            if not settings.gallery.is_file():
                return {"box_format": BOX_FORMAT, "gallery_size": 0,
                        "faces": [{"box": _box(face.face.box, photo), "name": None, "distance": None}
                                  for face in recognizer(photo)]}
            with _gallery(settings, "r") as gallery:
                faces = recognizer.identify(photo, gallery, top_k=1)
                size = len(gallery.people())
            return {"box_format": BOX_FORMAT, "gallery_size": size,
                    "faces": [{"box": _box(face.face.box, photo), "name": face.name,
                               "distance": round(face.matches[0].distance, 4) if face.matches else None}
                              for face in faces]}

        return await _run(request, work)

    @app.get("/api/faces/gallery", tags=["faces"], summary="The enrolled people")
    async def gallery_list(request: Request) -> dict:
        settings = _settings(request)

        def work() -> dict[str, Any]:
            if not settings.gallery.is_file():
                return {"people": []}
            with _gallery(settings, "r") as gallery:
                return {"people": [{"name": p.name, "templates": p.faces} for p in gallery.people()]}

        return await _run(request, work)

    @app.post("/api/faces/enroll", tags=["faces"], summary="Add a photo of a person (admin token)",
              dependencies=[Depends(require_admin)], responses=_ADMIN_RESPONSES)
    async def enroll(request: Request, name: Annotated[str, Form(min_length=1, max_length=100)],
                     image: Annotated[UploadFile, File()]) -> dict:
        settings = _settings(request)
        upload = await _read_upload(image, "image")

        def work() -> dict[str, Any]:
            photo = _decode(*upload, settings)
            face = request.app.state.models.get("faces").main_face(photo, upload[1])
            with _gallery(settings, "c") as gallery:
                before = {person.name: person.faces for person in gallery.people()}
                gallery.add(name, face.descriptor[None], sources=["upload"])
                # The gallery stores the name tidied ("Ann  Lee" as "Ann Lee"): report the person
                # this enrolment changed or created, not a lookup by the name as sent.
                person = _enrolled(gallery.people(), before, name)
            return {"name": person.name, "templates": person.faces, "box_format": BOX_FORMAT,
                    "box": _box(face.face.box, photo)}

        return await _run(request, work)

    @app.delete("/api/faces/gallery/{name}", tags=["faces"], summary="Remove a person (admin token)",
                dependencies=[Depends(require_admin)], responses=_ADMIN_RESPONSES)
    async def remove(request: Request, name: str) -> dict:
        settings = _settings(request)
        nobody = ApiError(404, "not_found", f"nobody called {name!r} is enrolled")

        def work() -> dict[str, Any]:
            if not settings.gallery.is_file():
                raise nobody
            with _gallery(settings, "w") as gallery:
                if name not in {person.name for person in gallery.people()}:
                    raise nobody
                return {"name": name, "removed_templates": gallery.remove(name)}

        return await _run(request, work)


class _gallery:
    """The SQLite gallery opened for one job (SQLite connections belong to the thread that made
    them), read-only ("r") unless the job changes it ("w"; "c" may create it)."""

    def __init__(self, settings: ServerSettings, mode: str) -> None:
        self.path, self.mode = settings.gallery, mode

    def __enter__(self) -> Any:
        from slimvision.inference.face_gallery import DLIB_RESNET_V1, Gallery

        self.gallery = Gallery.open(self.path, DLIB_RESNET_V1, mode=self.mode)
        return self.gallery

    def __exit__(self, *exc: object) -> None:
        self.gallery.close()


def _enrolled(people: list[Any], before: dict[str, int], name: str) -> Any:
    """The person an enrolment created or added to: the one whose count changed, else (the photo
    was there already) the one whose tidied name matches."""
    changed = [person for person in people if person.faces != before.get(person.name)]
    if changed:
        return changed[0]
    tidied = " ".join(name.split())
    return next((person for person in people if person.name == tidied),
                SimpleNamespace(name=tidied, faces=before.get(tidied, 0)))


def _box(box: Any, photo: np.ndarray) -> list[int]:
    """A face box as the API writes it (:data:`BOX_FORMAT`): whole pixels inside the photo, as the
    CLI writes it (:func:`~slimvision.inference.faces.box_xyxy`)."""
    from slimvision.inference.faces import box_xyxy

    return box_xyxy(box, photo.shape)


# --------------------------------------------------------------------------- DCGAN
def _gan_routes(app: Any) -> None:
    @app.get("/api/gan/sample", tags=["gan"], response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "a grid of generated digits"}},
             summary="A grid from the shipped 32 px digits generator")
    async def gan_sample(request: Request, seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
                         n: Annotated[int, Query(ge=1, le=MAX_GAN_SAMPLES)] = 16) -> Response:
        from slimvision.inference.gan import tile

        def work() -> np.ndarray:
            images = request.app.state.models.get("gan").sample(n, seed=seed)
            return tile(images, columns=min(8, n))

        return _png(await _run(request, work), {"Cache-Control": "public, max-age=3600"})


# --------------------------------------------------------------------------- VAE
def _vae_routes(app: Any) -> None:
    @app.post("/api/vae/denoise", tags=["vae"], summary="Add noise to a grey slice, then restore it with the VAE")
    async def denoise(request: Request, image: Annotated[UploadFile, File()],
                      noise: Annotated[float, Form(ge=0, le=1)] = 0.1,
                      seed: Annotated[int, Form(ge=0, le=2**31 - 1)] = 0) -> dict:
        settings = _settings(request)
        upload = await _read_upload(image, "image")

        def work() -> dict[str, Any]:
            from slimvision.inference.vae import to_uint8
            from slimvision.io.images import to_gray

            pixels = to_gray(_decode(*upload, settings)).astype(np.float32) / 255.0
            noisy = np.clip(pixels + np.random.default_rng(seed).normal(0, noise, pixels.shape), 0, 1).astype(np.float32)
            restored = request.app.state.models.get("vae").restore_slice(noisy)
            return {"noisy": _data_url(to_uint8(noisy)), "denoised": _data_url(to_uint8(restored)),
                    "width": pixels.shape[1], "height": pixels.shape[0]}

        return await _run(request, work)


# --------------------------------------------------------------------------- numerals
def _numeral_routes(app: Any) -> None:
    @app.post("/api/numerals/read", tags=["numerals"], summary="Find and read Roman numerals on a page image")
    async def read_numerals(request: Request, image: Annotated[UploadFile, File()]) -> dict:
        settings = _settings(request)
        upload = await _read_upload(image, "image")

        def work() -> dict[str, Any]:
            page = _decode(*upload, settings, min_side=1)
            readings = request.app.state.models.get("numerals")(page)
            return {"width": page.shape[1], "height": page.shape[0], "box_format": BOX_FORMAT,
                    "numerals": [{"text": r.text, "value": r.value, "standard": r.standard, "problem": r.problem,
                                  "box": [int(value) for value in r.box], "confidence": round(float(r.confidence), 3)}
                                 for r in readings]}

        return await _run(request, work)
