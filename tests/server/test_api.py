"""The JSON API through FastAPI's test client: every endpoint, and the bad inputs each must refuse."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi import Request  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from slimvision.server.app import create_app  # noqa: E402
from slimvision.server.settings import ServerSettings  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "slimvision" / "samples"
TOKEN = "s3cret-token"


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def gradient(height: int = 64, width: int = 96) -> np.ndarray:
    y, x = np.mgrid[:height, :width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1).astype(np.uint8)


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    gallery = tmp_path_factory.mktemp("server") / "gallery.sqlite"
    with TestClient(create_app(ServerSettings(admin_token=TOKEN, gallery=gallery, max_upload_mb=2,
                                              max_pixels=4_000_000))) as test_client:
        yield test_client


def assert_error(response, status: int, code: str, words: str = "") -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert words.lower() in error["message"].lower()


# ----------------------------------------------------------------------- server
def test_health_and_schema(client):
    assert client.get("/api/health").json()["status"] == "ok"
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/style/stylize", "/api/faces/verify", "/api/faces/enroll", "/api/gan/sample",
                 "/api/vae/denoise", "/api/numerals/read"):
        assert path in paths
    assert client.get("/docs").status_code == 404  # its page would load scripts from a CDN


def test_every_response_is_cross_origin_isolated_and_not_cors_open(client):
    response = client.get("/api/health", headers={"Origin": "https://elsewhere.example"})
    assert response.headers["cross-origin-opener-policy"] == "same-origin"
    assert response.headers["cross-origin-embedder-policy"] == "require-corp"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in response.headers


def test_cors_only_for_the_origins_given():
    app = create_app(ServerSettings(cors_origins=("https://ok.example",)))
    with TestClient(app) as test_client:
        allowed = test_client.get("/api/health", headers={"Origin": "https://ok.example"})
        other = test_client.get("/api/health", headers={"Origin": "https://bad.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://ok.example"
    assert "access-control-allow-origin" not in other.headers


def test_unknown_paths_and_methods_are_json(client):
    assert_error(client.get("/api/nothing"), 404, "not_found")
    assert_error(client.get("/api/numerals/read"), 405, "method_not_allowed")


def test_static_files_cannot_escape_their_folder(client):
    for name in ("../app.py", "..%2Fapp.py", "%2e%2e/settings.py"):
        assert client.get(f"/static/{name}").status_code == 404
    assert_error(client.get("/vendor/ort/package.json"), 404, "not_found", "no runtime file")


def test_runtime_files_are_gzipped_when_installed(client):
    settings = client.app.state.settings
    if not (settings.web_assets / "ort-wasm-simd-threaded.wasm").is_file():
        pytest.skip(f"onnxruntime-web is not installed in {settings.web_assets} (make web)")
    response = client.get("/vendor/ort/ort-wasm-simd-threaded.wasm", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200 and response.headers["content-encoding"] == "gzip"
    assert response.content[:4] == b"\0asm"  # the client decoded it
    assert int(response.headers["content-length"]) < 0.4 * len(response.content)


def test_the_webgpu_build_can_load_its_wasm_binary(client):
    """ort.webgpu.min.mjs names the asyncify binary; each file it names must be served."""
    import re

    from slimvision.server.app import ORT_FILES

    bundle = client.app.state.settings.web_assets / "ort.webgpu.min.mjs"
    if not bundle.is_file():
        pytest.skip(f"onnxruntime-web is not installed in {bundle.parent} (make web)")
    named = set(re.findall(r"ort-wasm-simd-threaded[a-z.]*\.mjs", bundle.read_text()))
    assert named and named <= ORT_FILES
    for name in named:
        assert client.get(f"/vendor/ort/{name}").status_code == 200
        assert client.get(f"/vendor/ort/{name[:-4]}.wasm").status_code == 200


def test_the_page_is_served_compressed(client):
    response = client.get("/", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200 and response.headers["content-encoding"] == "gzip"
    assert b"slimvision" in response.content


def test_missing_runtime_says_how_to_install_it(tmp_path):
    with TestClient(create_app(ServerSettings(web_assets=tmp_path / "none"))) as test_client:
        response = test_client.get("/vendor/ort/ort.wasm.min.mjs")
    assert_error(response, 404, "not_found", "make web")
    assert str(tmp_path) not in response.text and "none" not in response.text


# ----------------------------------------------------------------------- uploads
def test_uploads_are_sniffed_not_trusted(client):
    fake = {"image": ("page.png", b"<html>not an image</html>", "image/png")}
    assert_error(client.post("/api/numerals/read", files=fake), 415, "unsupported_media_type", "checked from its bytes")
    # A real PNG under a misleading name and type is accepted.
    page = np.full((40, 60, 3), 255, np.uint8)
    misnamed = {"image": ("notes.txt", png_bytes(page), "text/plain")}
    assert client.post("/api/numerals/read", files=misnamed).status_code == 200


def test_empty_truncated_and_oversized_uploads(client):
    assert_error(client.post("/api/numerals/read", files={"image": ("a.png", b"", "image/png")}), 400, "bad_input",
                 "empty")
    whole = png_bytes(gradient(120, 160))
    truncated = whole[:len(whole) // 2]
    assert_error(client.post("/api/numerals/read", files={"image": ("a.png", truncated, "image/png")}), 400,
                 "bad_input", "corrupt")
    big = b"\x89PNG\r\n\x1a\n" + bytes(3 * 2**20)
    assert_error(client.post("/api/numerals/read", files={"image": ("a.png", big, "image/png")}), 413, "too_large",
                 "2 MB")


def test_pixel_limit_is_checked_before_decoding(client):
    huge = Image.new("L", (2500, 2000))  # 5 MP of zeros compresses to a few kB
    buffer = io.BytesIO()
    huge.save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 2**20
    assert_error(client.post("/api/numerals/read", files={"image": ("a.png", buffer.getvalue(), "image/png")}), 413,
                 "too_large", "above the limit")


def test_a_form_field_where_a_file_belongs(client):
    response = client.post("/api/numerals/read", data={"image": "/etc/passwd"})
    assert response.status_code == 422 and "error" in response.json()


# ----------------------------------------------------------------------- style
def test_style_models_and_their_graphs(client):
    listing = client.get("/api/style/models").json()
    assert listing["default"] == "slimvision-fast-v7"
    fast = next(model for model in listing["models"] if model["name"] == listing["default"])
    assert fast["kind"] == "fast" and fast["style_dim"] == 100 and fast["size_multiple"] == 4
    for part in ("predictor", "transform"):
        graph = client.get(fast[part]["url"])
        assert graph.status_code == 200 and len(graph.content) == fast[part]["bytes"]
    assert fast["predictor"]["bytes"] + fast["transform"]["bytes"] <= 2e6  # issue 24: the fast bundle <= 2 MB
    assert_error(client.get("/api/style/models/nope/predictor.onnx"), 404, "not_found")
    assert_error(client.get("/api/style/models/slimvision-fast-v5/secret.onnx"), 404, "not_found")


def test_samples_listed_and_served(client):
    samples = client.get("/api/style/samples").json()
    assert {item["name"] for item in samples["content"]} >= {"chelsea_cat.jpg"}
    first = samples["styles"][0]
    assert client.get(first["url"]).content[:3] == b"\xff\xd8\xff"
    assert_error(client.get("/api/samples/styles/..%2F..%2Fserver%2Fapp.py"), 404, "not_found")
    assert_error(client.get("/api/samples/weights/x.onnx"), 404, "not_found")


def test_stylize_matches_the_python_pipeline(client):
    from slimvision.inference.style import StyleTransferPipeline
    from slimvision.io.images import load_image

    content, style = gradient(64, 80), load_image(SAMPLES / "styles" / "starry_night.jpg")
    files = [("content", ("c.png", png_bytes(content), "image/png")),
             ("style", ("s.jpg", (SAMPLES / "styles" / "starry_night.jpg").read_bytes(), "image/jpeg"))]
    response = client.post("/api/style/stylize", files=files, data={"strength": "0.8", "preserve_color": "true"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png" and float(response.headers["x-inference-ms"]) > 0
    served = np.asarray(Image.open(io.BytesIO(response.content)))
    expected = StyleTransferPipeline("slimvision-fast-v7")(content, [style], strength=0.8, preserve_color=True)
    np.testing.assert_array_equal(served, expected)


def test_stylize_blends_several_styles(client):
    style = png_bytes(gradient(48, 48)[::-1])
    files = [("content", ("c.png", png_bytes(gradient()), "image/png")),
             ("style", ("a.png", style, "image/png")), ("style", ("b.png", png_bytes(gradient(48, 48)), "image/png"))]
    one = client.post("/api/style/stylize", files=files, data={"weights": "1,0"})
    other = client.post("/api/style/stylize", files=files, data={"weights": "0,1"})
    assert one.status_code == other.status_code == 200
    assert one.content != other.content


@pytest.mark.parametrize("data, words", [
    ({"strength": "1.5"}, "strength"),
    ({"weights": "1,2,3"}, "weights"),
    ({"weights": "a,b"}, "weights"),
    ({"weights": "0,0"}, "weights"),
    ({"model": "../../etc/passwd"}, "model"),
])
def test_stylize_refuses_bad_settings(client, data, words):
    files = [("content", ("c.png", png_bytes(gradient()), "image/png")),
             ("style", ("a.png", png_bytes(gradient()), "image/png")), ("style", ("b.png", png_bytes(gradient()), "image/png"))]
    assert_error(client.post("/api/style/stylize", files=files, data=data), 422, "invalid_request", words)


def test_stylize_needs_content_and_style(client):
    only_content = [("content", ("c.png", png_bytes(gradient()), "image/png"))]
    assert_error(client.post("/api/style/stylize", files=only_content), 422, "invalid_request", "style")
    tiny = [("content", ("c.png", png_bytes(gradient(8, 8)), "image/png")),
            ("style", ("s.png", png_bytes(gradient()), "image/png"))]
    assert_error(client.post("/api/style/stylize", files=tiny), 400, "bad_input", "at least 16x16")


# ----------------------------------------------------------------------- faces
def test_faces_verify_identify_enroll_remove(client):
    photo = (SAMPLES / "content" / "astronaut.jpg").read_bytes()
    mirrored = np.ascontiguousarray(np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))[:, ::-1])
    verdict = client.post("/api/faces/verify", files={"a": ("a.jpg", photo, "image/jpeg"),
                                                     "b": ("b.png", png_bytes(mirrored), "image/png")}).json()
    assert verdict["same"] is True and verdict["distance"] < verdict["threshold"]
    assert verdict["box_format"] == "xyxy"
    height, width = mirrored.shape[:2]
    x0, y0, x1, y1 = verdict["boxes"]["a"]
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    # The mirrored photo's box is about the first one mirrored: [x0, y0, x1, y1] -> [W - x1, y0, W - x0, y1]
    # (the detector is not exactly symmetric: a tenth of the face's width).
    mx0, my0, mx1, my1 = verdict["boxes"]["b"]
    slack = 0.1 * (x1 - x0)
    assert abs(mx0 - (width - x1)) <= slack and abs(mx1 - (width - x0)) <= slack and abs(my0 - y0) <= slack

    unknown = client.post("/api/faces/identify", files={"image": ("a.jpg", photo, "image/jpeg")}).json()
    assert [face["name"] for face in unknown["faces"]] == [None] and unknown["box_format"] == "xyxy"
    # The same whole-pixel boxes the CLI writes (inference.faces.box_xyxy), not tenths of a pixel.
    from slimvision.inference.faces import FaceRecognizer, box_xyxy
    from slimvision.io.images import load_image

    rgb = load_image(SAMPLES / "content" / "astronaut.jpg")
    expected = box_xyxy(FaceRecognizer().main_face(rgb).face.box, rgb.shape)
    assert unknown["faces"][0]["box"] == verdict["boxes"]["a"] == expected
    assert all(isinstance(value, int) for value in expected)

    enrol = {"image": ("a.jpg", photo, "image/jpeg")}
    assert_error(client.post("/api/faces/enroll", files=enrol, data={"name": "Eileen"}), 401, "unauthorized")
    assert_error(client.post("/api/faces/enroll", files=enrol, data={"name": "Eileen"},
                             headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    added = client.post("/api/faces/enroll", files=enrol, data={"name": "Eileen"}, headers=auth)
    assert added.status_code == 200 and added.json()["templates"] == 1 and added.json()["box_format"] == "xyxy"
    assert client.get("/api/faces/gallery").json()["people"] == [{"name": "Eileen", "templates": 1}]
    found = client.post("/api/faces/identify", files={"image": ("m.png", png_bytes(mirrored), "image/png")}).json()
    assert [face["name"] for face in found["faces"]] == ["Eileen"]

    assert_error(client.delete("/api/faces/gallery/Eileen"), 401, "unauthorized")
    assert client.delete("/api/faces/gallery/Eileen", headers=auth).json()["removed_templates"] == 1
    assert client.get("/api/faces/gallery").json()["people"] == []


def test_faces_without_a_face_or_a_token(client, tmp_path):
    blank = {"a": ("a.png", png_bytes(gradient(120, 120)), "image/png"),
             "b": ("b.png", png_bytes(gradient(120, 120)), "image/png")}
    assert_error(client.post("/api/faces/verify", files=blank), 422, "cannot_process", "no face")
    with TestClient(create_app(ServerSettings(gallery=tmp_path / "g.sqlite"))) as read_only:
        response = read_only.post("/api/faces/enroll", files={"image": blank["a"]}, data={"name": "x"},
                                  headers={"Authorization": "Bearer anything"})
    assert_error(response, 403, "forbidden", "--admin-token")


# ----------------------------------------------------------------------- GAN, VAE, numerals
def test_gan_sample_is_a_deterministic_grid(client):
    first = client.get("/api/gan/sample", params={"seed": 7, "n": 4})
    again = client.get("/api/gan/sample", params={"seed": 7, "n": 4})
    other = client.get("/api/gan/sample", params={"seed": 8, "n": 4})
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    assert first.content == again.content != other.content
    grid = Image.open(io.BytesIO(first.content))
    assert grid.width > 4 * 32 and grid.height >= 32
    assert_error(client.get("/api/gan/sample", params={"n": 1000}), 422, "invalid_request", "n")
    assert_error(client.get("/api/gan/sample", params={"seed": -1}), 422, "invalid_request", "seed")


def test_vae_denoise_returns_both_images(client):
    from slimvision.inference.vae import DEMO_DENOISER

    if not DEMO_DENOISER.is_dir():
        pytest.skip("no shipped denoiser")
    y, x = np.mgrid[:128, :128]
    brain = (255 * np.exp(-((x - 64) ** 2 + (y - 64) ** 2) / 1500)).astype(np.uint8)
    result = client.post("/api/vae/denoise", files={"image": ("s.png", png_bytes(brain), "image/png")},
                         data={"noise": "0.2"})
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["width"] == body["height"] == 128
    assert body["noisy"].startswith("data:image/png;base64,") and body["denoised"] != body["noisy"]
    assert_error(client.post("/api/vae/denoise", files={"image": ("s.png", png_bytes(brain), "image/png")},
                             data={"noise": "2"}), 422, "invalid_request", "noise")


def test_numerals_read_a_generated_page(client):
    from slimvision.data.numerals import NoiseConfig, find_fonts, render_page, split_fonts

    train, _ = split_fonts(find_fonts())
    face = [font for font in train if font.name == "DejaVuSerif"]
    page, truth = render_page([14, 1994], face, seed=4, noise=NoiseConfig(level=0.3), size=(500, 600))
    body = client.post("/api/numerals/read", files={"image": ("p.png", png_bytes(page), "image/png")}).json()
    assert sorted(item["value"] for item in body["numerals"]) == [14, 1994] and body["box_format"] == "xyxy"
    boxes = {number: box for number, box in truth}
    for item in body["numerals"]:
        top, left, bottom, right = boxes[item["value"]]
        x0, y0, x1, y1 = item["box"]
        assert abs(x0 - left) <= 3 and abs(y0 - top) <= 3 and abs(x1 - right) <= 3 and abs(y1 - bottom) <= 3
    assert json.dumps(body)  # plain JSON types only


# ----------------------------------------------------------------------- errors name things, never server paths
def _secret_gallery(tmp_path: Path) -> Path:
    folder = tmp_path / "secret-folder"
    folder.mkdir()
    return folder / "people.sqlite"


def _assert_no_server_path(response, tmp_path: Path) -> None:
    assert "error" in response.json(), response.text
    assert str(tmp_path) not in response.text and "secret-folder" not in response.text, response.text


def test_a_damaged_gallery_is_named_not_located(tmp_path):
    gallery = _secret_gallery(tmp_path)
    gallery.write_bytes(b"this is not a gallery, nor any SQLite database " * 50)
    photo = (SAMPLES / "content" / "astronaut.jpg").read_bytes()
    with TestClient(create_app(ServerSettings(gallery=gallery, admin_token=TOKEN))) as test_client:
        responses = [test_client.get("/api/faces/gallery"),
                     test_client.delete("/api/faces/gallery/Nobody", headers={"Authorization": f"Bearer {TOKEN}"}),
                     test_client.post("/api/faces/identify", files={"image": ("a.jpg", photo, "image/jpeg")})]
    for response in responses:
        assert response.status_code == 422
        _assert_no_server_path(response, tmp_path)
        assert "people.sqlite" in response.json()["error"]["message"]


def test_removing_someone_not_enrolled_is_a_404_without_paths(tmp_path):
    from slimvision.inference.face_gallery import DLIB_RESNET_V1, Gallery

    gallery = _secret_gallery(tmp_path)
    with Gallery.open(gallery, DLIB_RESNET_V1, mode="c") as opened:
        vector = np.random.default_rng(0).normal(size=(1, DLIB_RESNET_V1.dim)).astype(np.float32)
        opened.add("Someone", vector / np.linalg.norm(vector))
    with TestClient(create_app(ServerSettings(gallery=gallery, admin_token=TOKEN))) as test_client:
        response = test_client.delete("/api/faces/gallery/Nobody", headers={"Authorization": f"Bearer {TOKEN}"})
        assert test_client.get("/api/faces/gallery").json()["people"] == [{"name": "Someone", "templates": 1}]
    assert_error(response, 404, "not_found", "nobody called 'Nobody'")
    _assert_no_server_path(response, tmp_path)


def test_every_error_type_reaches_the_client_without_server_paths(tmp_path):
    """Whatever the type, and whether raised in a handler or in a job on the queue."""
    from slimvision.errors import ConfigError, InputError, OutputError, SlimvisionError
    from slimvision.inference.face_gallery import GalleryError
    from slimvision.server.errors import ApiError

    secret = tmp_path / "secret-folder" / "weights"
    raised = {"input": InputError(secret / "model.onnx", "is damaged"),
              "relative": InputError("secret-folder/data/x.png", "is damaged"),
              "output": OutputError(secret / "out.png", "exists"),
              "config": ConfigError(f"unknown key 'x' in {secret / 'vae.json'}"),
              "slimvision": SlimvisionError(f"cannot read '{secret / 'a b' / 'map.npz'}': truncated"),
              "gallery": GalleryError("no person named 'x'", secret / "people.sqlite"),
              "api": ApiError(404, "not_found", f"{secret / 'thing'} is missing"),
              "unexpected": RuntimeError(f"[Errno 2] No such file: {secret / 'x'}")}
    app = create_app(ServerSettings(gallery=tmp_path / "g.sqlite"))

    async def in_handler(kind: str) -> None:
        raise raised[kind]

    async def in_job(kind: str, request: Request) -> None:
        def work() -> None:
            raise raised[kind]

        await request.app.state.jobs.run(work)

    app.add_api_route("/test/handler/{kind}", in_handler)
    app.add_api_route("/test/job/{kind}", in_job)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        for where in ("handler", "job"):
            for kind in raised:
                response = test_client.get(f"/test/{where}/{kind}")
                assert response.status_code >= 400, (where, kind)
                _assert_no_server_path(response, tmp_path)
                assert "weights" not in response.text, (where, kind, response.text)


def test_a_job_that_raises_stopiteration_answers_at_once():
    """A StopIteration inside a job used to leave the request waiting for the 504 a minute later."""
    app = create_app(ServerSettings(timeout_s=600))

    async def stops(request: Request) -> None:
        await request.app.state.jobs.run(lambda: next(iter([])))

    app.add_api_route("/test/stops", stops)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        assert_error(test_client.get("/test/stops"), 500, "internal_error")


def test_a_name_with_inner_spaces_is_enrolled_as_tidied(tmp_path):
    photo = (SAMPLES / "content" / "astronaut.jpg").read_bytes()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(ServerSettings(gallery=tmp_path / "g.sqlite", admin_token=TOKEN,
                                              timeout_s=600))) as test_client:
        added = test_client.post("/api/faces/enroll", files={"image": ("a.jpg", photo, "image/jpeg")},
                                 data={"name": " Ann  Lee "}, headers=auth)
        listed = test_client.get("/api/faces/gallery").json()
    assert added.status_code == 200, added.text
    assert added.json()["name"] == "Ann Lee" and added.json()["templates"] == 1
    assert listed["people"] == [{"name": "Ann Lee", "templates": 1}]


@pytest.mark.parametrize("name", ["x%00", "a%00/../../app.py", "x" * 5000])
def test_names_the_file_system_cannot_take_are_404(client, name):
    assert_error(client.get(f"/static/{name}"), 404, "not_found")


# ----------------------------------------------------------------------- HEAD, openapi
def test_head_works_like_get_without_a_body_on_every_get_route(client):
    from fastapi.routing import APIRoute
    from starlette.routing import Route

    examples = {"/static/{name:path}": "/static/style.css", "/vendor/ort/{name}": "/vendor/ort/nothing.mjs",
                "/api/style/models/{name}/{part}.onnx": "/api/style/models/slimvision-fast-v5/predictor.onnx",
                "/api/samples/{kind}/{name}": "/api/samples/content/chelsea_cat.jpg"}
    paths = [examples.get(route.path, route.path) for route in client.app.routes
             if isinstance(route, (APIRoute, Route)) and "GET" in route.methods]
    assert "/" in paths and "/api/health" in paths
    for path in paths:
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code, path
        assert head.content == b"", path
        assert head.headers["content-type"] == get.headers["content-type"], path
        assert head.headers.get("content-length") == get.headers.get("content-length"), path
    assert client.head("/api/numerals/read").status_code == 405  # a POST route stays POST-only


def test_openapi_says_how_to_send_the_admin_token(client):
    schema = client.get("/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["adminToken"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert "--admin-token" in scheme["description"]
    changing = {("post", "/api/faces/enroll"), ("delete", "/api/faces/gallery/{name}")}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            secured = operation.get("security") == [{"adminToken": []}]
            assert secured == ((method, path) in changing), (method, path)
            if secured:
                assert {"401", "403"} <= set(operation["responses"])


def test_the_face_routes_use_the_face_model_setting_and_its_galleries(tmp_path):
    pytest.importorskip("face_recognition_models", reason="needs the faces extra")
    from slimvision.inference.face_gallery import EmbedderInfo, Gallery

    photo = (SAMPLES / "content" / "astronaut.jpg").read_bytes()
    gallery = tmp_path / "g.sqlite"
    settings = ServerSettings(gallery=gallery, admin_token=TOKEN, face_model="face-embedder-dlib-resnet-int8")
    with TestClient(create_app(settings)) as test_client:
        enrolled = test_client.post("/api/faces/enroll", data={"name": "eileen"},
                                    files={"image": ("a.jpg", photo, "image/jpeg")},
                                    headers={"Authorization": f"Bearer {TOKEN}"})
        assert enrolled.status_code == 200, enrolled.text
        assert test_client.app.state.models.get("face-embedder-dlib-resnet-int8") is not None
        found = test_client.post("/api/faces/identify", files={"image": ("a.jpg", photo, "image/jpeg")}).json()
        assert [face["name"] for face in found["faces"]] == ["eileen"]
    other = tmp_path / "other.sqlite"  # a gallery of another model's descriptors is refused, not mixed
    with Gallery.open(other, EmbedderInfo("someone-else", "1", 128, "euclidean", 0.6), mode="c") as foreign:
        foreign.add("x", np.ones((1, 128), np.float32))
    with TestClient(create_app(ServerSettings(gallery=other))) as test_client:
        refused = test_client.post("/api/faces/identify", files={"image": ("a.jpg", photo, "image/jpeg")})
        assert refused.status_code >= 400 and "someone-else" in refused.text


def test_serve_refuses_a_face_model_that_is_no_embedder(capsys):
    from slimvision.cli.main import main

    assert main(["serve", "--face-model", "face-detector-mtcnn"]) != 0
    assert "not a face embedder" in capsys.readouterr().err
