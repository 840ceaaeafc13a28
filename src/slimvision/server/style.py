"""Style transfer: the models the page runs in the browser, the bundled samples, and stylizing on
the server (the page's fallback)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from slimvision.assets import SAMPLES
from slimvision.inference.style import artifact_for
from slimvision.server.errors import ApiError
from slimvision.server.shared import Models, compressed_response, decode, png, read_upload, run_job, settings_of

#: The style models the page can run (registered artifact names) -> kind: whatever ``--model fast``
#: and ``--model teacher`` run (their registrations' aliases). The fast bundle is the page's default.
STYLE_MODELS = {artifact_for("fast"): "fast", artifact_for("teacher"): "teacher"}
DEFAULT_STYLE_MODEL = artifact_for("fast")
MAX_STYLES = 4

router = APIRouter()


@router.get("/api/style/models", tags=["style"], summary="The style models the page can run in the browser")
def style_models(request: Request) -> dict[str, Any]:
    return {"default": DEFAULT_STYLE_MODEL,
            "models": [_model_entry(request.app.state.models, name, kind) for name, kind in STYLE_MODELS.items()]}


@router.get("/api/style/models/{name}/{part}.onnx", tags=["style"], summary="A browser-ready ONNX graph")
def style_graph(name: str, part: str, request: Request) -> Response:
    if name not in STYLE_MODELS or part not in ("predictor", "transform"):
        raise ApiError(404, "not_found", f"no style graph {name}/{part}.onnx (models: {', '.join(STYLE_MODELS)})")
    data = _browser_graph(request.app.state.models, name, part)
    return compressed_response(data, "application/octet-stream", request.headers.get("accept-encoding", ""),
                               "public, max-age=3600", key=("style", name, part, len(data)))


@router.get("/api/style/samples", tags=["style"], summary="The bundled sample photos and paintings")
def style_samples() -> dict[str, Any]:
    return {kind: [{"name": path.name, "url": f"/api/samples/{kind}/{path.name}"} for path in _sample_files(kind)]
            for kind in ("content", "styles")}


@router.get("/api/samples/{kind}/{name}", tags=["style"], summary="One bundled sample image")
def sample(kind: str, name: str) -> Response:
    from fastapi.responses import FileResponse

    files = {path.name: path for path in _sample_files(kind)} if kind in ("content", "styles") else {}
    if name not in files:
        raise ApiError(404, "not_found", f"no sample {kind}/{name}")
    return FileResponse(files[name], media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})


@router.post("/api/style/stylize", tags=["style"], response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "the stylized image"}},
             summary="Stylize on the server (the page's fallback when the browser cannot run the model)")
async def stylize(request: Request, content: Annotated[UploadFile, File(description="the photo")],
                  style: Annotated[list[UploadFile], File(description="one or more style images")],
                  weights: Annotated[str | None, Form(description="blend weights, e.g. 0.7,0.3")] = None,
                  strength: Annotated[float, Form(ge=0, le=1)] = 1.0,
                  preserve_color: Annotated[bool, Form()] = False,
                  model: Annotated[str, Form()] = DEFAULT_STYLE_MODEL) -> Response:
    settings = settings_of(request)
    if model not in STYLE_MODELS:
        raise ApiError(422, "invalid_request", f"model: {model!r} is not one of {', '.join(STYLE_MODELS)}")
    if not 1 <= len(style) <= MAX_STYLES:
        raise ApiError(422, "invalid_request", f"style: give 1 to {MAX_STYLES} style images, got {len(style)}")
    blend = _parse_weights(weights, len(style))
    content_bytes = await read_upload(content, "content")
    style_bytes = [await read_upload(upload, f"style {index + 1}") for index, upload in enumerate(style)]

    def work() -> tuple[np.ndarray, float]:
        pipeline = request.app.state.models.get(model)
        photo = decode(*content_bytes, settings)
        paintings = [decode(*item, settings) for item in style_bytes]
        started = time.perf_counter()
        result = pipeline(photo, paintings, blend, strength, preserve_color, max_side=settings.max_side)
        return result, (time.perf_counter() - started) * 1000

    image, milliseconds = await run_job(request, work)
    return png(image, {"X-Inference-Ms": f"{milliseconds:.1f}", "X-Model": model})


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
    return sorted(path for path in (SAMPLES.path() / kind).glob("*") if path.suffix.lower() in (".jpg", ".jpeg", ".png"))


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

    artifact = models.get(name).artifact
    parts = {part: {"url": f"/api/style/models/{name}/{part}.onnx", "bytes": len(_browser_graph(models, name, part))}
             for part in ("predictor", "transform")}
    return {"name": name, "kind": kind, "description": artifact.description, **parts,
            "style_size": artifact.style_size, "size_multiple": artifact.size_multiple, "style_dim": STYLE_DIM,
            "layout": artifact.layout, "value_range": list(artifact.value_range)}
