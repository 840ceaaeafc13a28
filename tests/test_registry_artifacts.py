"""Every registered artifact loads, runs on a tiny input, and each graph it runs gives finite
outputs of the shape and dtype its card declares, from inputs made from the card alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slimvision.registry import ARTIFACTS, ArtifactSpec

#: Size given to a symbolic axis: 1 for the batch, else small but above every network's minimum
#: (MTCNN's 12 px window, style transfer's 16 px) and a multiple of 4 (the style transformer's).
BATCH, SIDE = 1, 32


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
    if hasattr(pipeline, "sample"):  # a generator graph: square RGB images, of the side its card fixes
        images = pipeline.sample(2, seed=0)
        side = pipeline.card.output("images").shape[-1]
        assert images.shape == (2, images.shape[1], images.shape[1], 3) and images.dtype == np.uint8
        assert images.shape[1] == side if isinstance(side, int) else images.shape[1] >= 4
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
    return {}  # pipelines by name, so the card test reuses the one the run test loaded


@pytest.mark.parametrize("name", ARTIFACTS.names())
def test_artifact_loads_and_runs_on_a_tiny_input(name: str, loaded: dict[str, Any]) -> None:
    check_runs_on_a_tiny_input(name, loaded)


def check_runs_on_a_tiny_input(name: str, loaded: dict[str, Any]) -> None:
    spec = ARTIFACTS.spec(name)
    _needs(spec)
    pipeline = loaded.setdefault(name, ARTIFACTS.create(name))
    for array in TINY_RUNS[spec.system](pipeline):
        assert np.all(np.isfinite(array)), name


def _feeds(card: Any) -> dict[str, np.ndarray]:
    """Inputs made from the card alone: its shapes (symbolic axes made tiny), dtypes and ranges."""
    rng = np.random.default_rng(0)
    feeds = {}
    for index, tensor in enumerate(card.inputs):
        shape = [dim if isinstance(dim, int) else (BATCH if index == 0 and axis == 0 or "batch" in dim else SIDE)
                 for axis, dim in enumerate(tensor.shape)]
        low, high = tensor.value_range or (0.0, 1.0)
        dtype = np.dtype(tensor.dtype)
        if dtype.kind in "iu":
            feeds[tensor.name] = rng.integers(int(low), int(high) + 1, shape).astype(dtype)
        else:
            feeds[tensor.name] = rng.uniform(low, high, shape).astype(dtype)
    return feeds


def _graph(spec: ArtifactSpec, role: str, pipeline: Any) -> Any:
    """The graph a card describes, as the pipeline runs it: its session for that role where it has
    one (the style teacher's transform runs with its spatial sizes freed, dlib's .dat is converted
    when it loads), else the graph file, else the weights run as their pipeline runs them."""
    from slimvision.graph.session import OnnxModel

    for owner in (pipeline, getattr(pipeline, "detector", None)):  # the recognizer holds a detector
        session = getattr(owner, role, None)
        if isinstance(session, OnnxModel):
            return session
    role_name, _, inside = role.partition("/")
    path = spec.paths()[role_name] / inside if inside else spec.paths()[role_name]
    if path.suffix == ".dat":  # dlib's network: the face pipeline converts it when it loads
        return pipeline.network
    if path.suffix == ".onnx":
        return OnnxModel(path, name=path.name)
    return _WEIGHTS_RUNNERS[path.suffix](pipeline)


class _Weights:
    """Weights that are no ONNX graph, run the way their pipeline runs them, with a graph's face."""

    def __init__(self, input_names: list[str], run: Callable[[dict[str, np.ndarray]], list[np.ndarray]]) -> None:
        self.input_names, self.run = input_names, run


def _torch_generator(module: Any) -> _Weights:
    import torch

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            return [module.eval()(torch.from_numpy(feeds["noise"])).numpy()]

    return _Weights(["noise"], run)


#: By file kind: the numerals map answers best-matching nodes; the float DCGAN is a torch module.
_WEIGHTS_RUNNERS: dict[str, Callable[[Any], _Weights]] = {
    ".npz": lambda reader: _Weights(["glyph_vector"], lambda feeds: list(reader.som.bmu(feeds["glyph_vector"]))),
    ".safetensors": _torch_generator,
}


@pytest.mark.parametrize("name", ARTIFACTS.names())
def test_each_graph_gives_what_its_card_declares(name: str, loaded: dict[str, Any]) -> None:
    check_graphs_against_cards(name, loaded)


def check_graphs_against_cards(name: str, loaded: dict[str, Any]) -> None:
    spec = ARTIFACTS.spec(name)
    _needs(spec)
    cards = spec.read_cards()  # InputError naming the file when a card is missing or broken
    assert cards, f"{name} has no card"
    pipeline = loaded.setdefault(name, ARTIFACTS.create(name))
    for role, card in cards.items():
        assert card.system == spec.system, (name, role)
        graph = _graph(spec, role, pipeline)
        assert graph.input_names == [tensor.name for tensor in card.inputs], (name, role)
        outputs = graph.run(_feeds(card))
        assert len(outputs) == len(card.outputs), (name, role)
        for array, tensor in zip(outputs, card.outputs):
            where = (name, role, tensor.name)
            assert array.dtype == np.dtype(tensor.dtype), where
            assert array.ndim == len(tensor.shape), where
            assert all(size == dim for size, dim in zip(array.shape, tensor.shape) if isinstance(dim, int)), where
            assert np.all(np.isfinite(array)), where
            if tensor.value_range is not None:
                low, high = tensor.value_range
                assert low - 1e-5 <= float(array.min()) and float(array.max()) <= high + 1e-5, where


def test_every_card_file_is_inside_slimvision() -> None:
    """Cards of graphs other packages ship are kept in slimvision (site-packages is not ours)."""
    import slimvision

    root = Path(slimvision.__file__).resolve().parent
    for spec in ARTIFACTS.specs():
        for role, path in spec.card_files().items():
            assert path.resolve().is_relative_to(root), (spec.name, role, path)


# --------------------------------------------------------------------------- adding a model
TINY_LATENT, TINY_SIDE = 3, 4


def tiny_generator(folder: Path, name: str = "tiny-generator") -> tuple[Path, np.ndarray]:
    """A new model as its author would make it: a 4 px grey generator graph (noise -> tanh(noise @ W)
    as 1x4x4 images) and its card beside it. Returns the graph's path and W."""
    import onnx
    from onnx import helper, numpy_helper

    from slimvision.export.card import ArtifactCard, TensorSpec, card_path, write_card

    weights = np.random.default_rng(7).normal(0, 1, (TINY_LATENT, TINY_SIDE * TINY_SIDE)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["noise", "W"], ["mixed"]), helper.make_node("Tanh", ["mixed"], ["flat"]),
             helper.make_node("Reshape", ["flat", "shape"], ["images"])]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("noise", onnx.TensorProto.FLOAT, ["batch", TINY_LATENT])],
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["batch", 1, TINY_SIDE, TINY_SIDE])],
        initializer=[numpy_helper.from_array(weights, "W"),
                     numpy_helper.from_array(np.array([-1, 1, TINY_SIDE, TINY_SIDE], np.int64), "shape")])
    path = folder / "generator.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    write_card(ArtifactCard(
        name=name, system="gan", task="generation", files={"graph": path.name},
        inputs=[TensorSpec("noise", ["batch", TINY_LATENT], "float32", "N,D", [-1.0, 1.0])],
        outputs=[TensorSpec("images", ["batch", 1, TINY_SIDE, TINY_SIDE], "float32", "NCHW", [-1.0, 1.0])],
        preprocessing={}, licence="MIT", provenance={"made_by": "tests/test_registry_artifacts.py"}, parity={},
        remake="tests/test_registry_artifacts.py::tiny_generator"), card_path(path))
    return path, weights


def test_a_new_model_needs_its_module_its_card_and_one_registration_line(tmp_path, capsys):
    """Registered with one call and nothing else edited, a new model is listed by ``slimvision
    models``, created by ARTIFACTS.create, listed and run by the server, and passes the checks
    every registered artifact passes."""
    from slimvision.artifacts import FileOf, artifact
    from slimvision.assets import LocalPath
    from slimvision.cli.main import main
    from slimvision.io.pixels import to_pixels

    graph, weights = tiny_generator(tmp_path)
    assert "tiny-generator" not in ARTIFACTS.names()
    with ARTIFACTS.temporarily(artifact("tiny-generator", "gan", "realtime", "draw 4 px grey blobs (a test's model)",
                                        {"generator": LocalPath(graph)}, "slimvision.inference.gan:GANSampler",
                                        path=FileOf("generator"))):
        assert main(["models", "--json"]) == 0
        listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
        row = listed["tiny-generator"]
        assert (row["system"], row["speed"], row["bytes"]) == ("gan", "realtime", graph.stat().st_size)
        assert row["files"] == [{"role": "generator", "bytes": graph.stat().st_size, "distribution": "local file",
                                 "version": "-", "resource": str(graph.resolve()), "licence": "not stated"}]
        assert main(["models"]) == 0
        assert "  tiny-generator  (" in capsys.readouterr().out

        sampler = ARTIFACTS.create("tiny-generator")
        noise = sampler.noise(2, seed=5)
        expected = to_pixels(np.tanh(noise @ weights).reshape(2, 1, TINY_SIDE, TINY_SIDE))
        assert np.array_equal(sampler.sample(2, seed=5), expected)  # its graph, run by its pipeline

        loaded: dict[str, Any] = {}
        check_runs_on_a_tiny_input("tiny-generator", loaded)  # the checks every shipped artifact passes
        check_graphs_against_cards("tiny-generator", loaded)

        served = _served_listing_and_pipeline("tiny-generator")
        if served is not None:
            rows, pipeline = served
            assert {item["name"]: item for item in rows}["tiny-generator"] == row
            assert np.array_equal(pipeline.sample(2, seed=5), expected)
    assert "tiny-generator" not in ARTIFACTS.names()  # the table is as it was


def _served_listing_and_pipeline(name: str) -> tuple[list[dict[str, Any]], Any] | None:
    """The server's ``/api/models`` rows and the pipeline its model cache creates for ``name``
    (None where the server's packages are not installed)."""
    try:
        from fastapi.testclient import TestClient
    except ImportError:  # fastapi or httpx missing: the server is an optional extra
        return None
    from slimvision.server.app import create_app

    with TestClient(create_app()) as client:
        response = client.get("/api/models")
        assert response.status_code == 200
        return response.json()["models"], client.app.state.models.get(name)


# --------------------------------------------------------------------------- second lists
#: Where the house names a registered artifact outside the registration table, with the system
#: each must be. These name models they use; none lists the models (the registry does).
NAMED_ELSEWHERE = {
    "slimvision.server.style:STYLE_MODELS": "style",        # the curated few the web page offers
    "slimvision.server.style:DEFAULT_STYLE_MODEL": "style",
    "slimvision.server.faces:RECOGNIZER": "faces",
    "slimvision.server.gan:GENERATOR": "gan",
    "slimvision.server.vae:DENOISER": "vae",
    "slimvision.server.numerals:READER": "numerals",
    "slimvision.cli.gan:GENERATOR": "gan",
    "slimvision.cli.vae:DENOISER": "vae",
    "slimvision.cli.vae:GENERATIVE": "vae",
    "slimvision.cli.numerals:READER": "numerals",
    "slimvision.cli.demo:FACE_DETECTOR": "faces",
    "slimvision.cli.demo:VAE_GENERATOR": "vae",
}


def test_the_web_pages_style_models_are_what_their_kind_picks_on_the_command_line() -> None:
    """The page names its two style models by kind ("fast", "teacher"): each must be the
    registered style model that ``--model KIND`` runs (the alias in its registration), so moving
    an alias to a new model cannot leave the page on another."""
    pytest.importorskip("fastapi")
    from slimvision.inference.style import artifact_for, style_artifact
    from slimvision.server.style import DEFAULT_STYLE_MODEL, STYLE_MODELS

    for name, kind in STYLE_MODELS.items():
        assert style_artifact(name).alias == kind and artifact_for(kind) == name, (name, kind)
    assert DEFAULT_STYLE_MODEL in STYLE_MODELS


def _names_in(value: Any) -> list[str]:
    """The artifact names a constant holds: a name, a dict's keys (or its values, if they are the names)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return list(value) if all(isinstance(key, str) for key in value) else list(value.values())
    raise TypeError(f"unexpected constant {value!r}")


@pytest.mark.parametrize("reference", sorted(NAMED_ELSEWHERE))
def test_every_artifact_named_outside_the_table_is_registered_in_its_system(reference: str) -> None:
    from slimvision.registry import import_object

    if reference.startswith("slimvision.server."):
        pytest.importorskip("fastapi")
    for name in _names_in(import_object(reference)):
        assert ARTIFACTS.spec(name).system == NAMED_ELSEWHERE[reference], (reference, name)


def test_the_docs_table_is_what_models_markdown_prints(capsys) -> None:
    """docs/models.md's table is ``slimvision models --markdown``'s output, line for line."""
    from slimvision.cli.models import MARKDOWN_HEADER
    from tests.cli.helpers import exit_code

    assert exit_code(["models", "--markdown"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    lines = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text().splitlines()
    start = lines.index(MARKDOWN_HEADER.splitlines()[0])
    end = next((index for index in range(start, len(lines)) if not lines[index].startswith("|")), len(lines))
    assert lines[start:end] == printed, ("docs/models.md's table is not the registry's: run "
                                         "'slimvision models --markdown' and paste its output over the table")


def test_the_cards_and_the_registry_know_the_same_systems() -> None:
    from slimvision.export.card import SYSTEMS as CARD_SYSTEMS
    from slimvision.registry import SYSTEMS

    assert CARD_SYSTEMS == SYSTEMS


def test_the_docs_example_of_adding_a_model_runs(tmp_path) -> None:
    """docs/models.md's three steps on a model of your own, run as its reader would: a fresh
    interpreter in an empty folder."""
    import re
    import subprocess
    import sys

    text = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    section = text[text.index("## Adding a model"):]
    example = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)[-1]
    done = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["(2, 4, 4, 3)", "['dcgan-digits32', 'dcgan-digits32-int8', 'my-blobs']"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["my-blobs.card.json", "my-blobs.onnx"]


def test_a_file_argument_given_to_create_replaces_the_registered_file_unlooked_for(tmp_path) -> None:
    """``--model PATH`` runs the registered pipeline on the user's file, even where the shipped
    one is not installed (it is never looked up)."""
    from dataclasses import replace

    from slimvision.assets import PackagedFile

    (tmp_path / "mine").mkdir()
    graph, weights = tiny_generator(tmp_path / "mine")
    absent = PackagedFile("no-such-distribution", "0", "no_such_package", "generator.onnx", "0" * 64, "none")
    shipped = ARTIFACTS.spec("dcgan-digits32-int8")
    with ARTIFACTS.temporarily(replace(shipped, files={"generator": absent})):
        sampler = ARTIFACTS.create("dcgan-digits32-int8", path=graph)
        assert sampler.sample(1, seed=0).shape == (1, TINY_SIDE, TINY_SIDE, 3)
        from slimvision.errors import MissingAssetError

        with pytest.raises(MissingAssetError, match="pip install 'no-such-distribution==0'"):
            ARTIFACTS.create("dcgan-digits32-int8")


def test_temporarily_puts_the_table_back_even_after_an_error(tmp_path) -> None:
    from dataclasses import replace

    shipped = ARTIFACTS.spec("numerals-som")
    names = ARTIFACTS.names()
    with pytest.raises(RuntimeError), ARTIFACTS.temporarily(replace(shipped, purpose="another")):
        assert ARTIFACTS.spec("numerals-som").purpose == "another"
        raise RuntimeError("a failing test body")
    assert ARTIFACTS.spec("numerals-som") is shipped and ARTIFACTS.names() == names
