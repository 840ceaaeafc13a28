"""Every registered artifact loads and runs on a tiny input; its cards are kept inside slimvision."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slimvision.registry import ARTIFACTS, ArtifactSpec

def _tiny_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _style(pipeline: Any) -> list[np.ndarray]:
    out = pipeline(_tiny_image(24, 20), _tiny_image(20, 28, seed=1))
    assert out.shape == (24, 20, 3) and out.dtype == np.uint8
    return [out]


def _faces(pipeline: Any) -> list[np.ndarray]:
    from PIL import Image

    from slimvision.assets import samples_dir

    with Image.open(samples_dir() / "content" / "astronaut.jpg") as photo:  # her face, ~60 px in 96 px
        tiny = np.asarray(photo.convert("RGB").crop((140, 40, 300, 200)).resize((96, 96), Image.Resampling.BILINEAR))
    (face,) = pipeline(tiny)
    if hasattr(face, "descriptor"):  # the recognizer: the face and its 128-d descriptor
        assert face.descriptor.shape == (128,)
        return [face.descriptor, np.asarray(face.face.box)]
    return [np.asarray(face.box), np.asarray(face.landmarks)]


def _vae(pipeline: Any) -> list[np.ndarray]:
    noisy = np.random.default_rng(0).random((24, 20)).astype(np.float32)
    restored = pipeline.restore_slice(noisy)
    assert restored.shape == noisy.shape
    return [restored]


def _gan(pipeline: Any) -> list[np.ndarray]:
    if hasattr(pipeline, "sample"):  # the int8 graph
        images = pipeline.sample(2, seed=0)
        assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
        return [images]
    import torch  # the float weights are a torch module

    with torch.no_grad():
        images = pipeline.eval()(torch.zeros(2, pipeline.config.latent_dim)).numpy()
    assert images.shape == (2, 1, 32, 32)
    return [images]


def _numerals(pipeline: Any) -> list[np.ndarray]:
    page = np.full((40, 60, 3), 255, np.uint8)
    page[10:30, 28:32] = 0  # one stroke: read or not, never an error
    return [np.asarray(reading.confidence) for reading in pipeline(page)]


#: One tiny call of each system's pipeline; returns the arrays that must be finite.
TINY_RUNS: dict[str, Callable[[Any], list[np.ndarray]]] = {
    "style": _style, "faces": _faces, "vae": _vae, "gan": _gan, "numerals": _numerals}


def _needs(spec: ArtifactSpec) -> None:
    """Skip, naming the package, when an artifact's files come from a package that is not installed."""
    from slimvision.errors import MissingAssetError

    try:
        spec.paths()
    except MissingAssetError as error:
        pytest.skip(str(error))
    if spec.pipeline.startswith("slimvision.models."):
        pytest.importorskip("torch")


@pytest.fixture(scope="module")
def loaded() -> dict[str, Any]:
    return {}  # pipelines by name, loaded once per module


@pytest.mark.parametrize("name", ARTIFACTS.names())
def test_artifact_loads_and_runs_on_a_tiny_input(name: str, loaded: dict[str, Any]) -> None:
    spec = ARTIFACTS.spec(name)
    _needs(spec)
    pipeline = loaded.setdefault(name, ARTIFACTS.create(name))
    for array in TINY_RUNS[spec.system](pipeline):
        assert np.all(np.isfinite(array)), name


def test_every_card_file_is_inside_slimvision() -> None:
    """Cards of graphs other packages ship are kept in slimvision (site-packages is not ours)."""
    import slimvision

    root = Path(slimvision.__file__).resolve().parent
    for spec in ARTIFACTS.specs():
        for role, path in spec.card_files().items():
            assert path.resolve().is_relative_to(root), (spec.name, role, path)
