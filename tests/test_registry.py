"""Registry: register / create / names, duplicate names, helpful unknown-name errors."""

from __future__ import annotations

from dataclasses import replace

import pytest

from slimvision.errors import SlimvisionError
from slimvision.registry import ARTIFACTS, Registry, UnknownNameError


@pytest.fixture()
def shapes() -> Registry:
    shapes = Registry("shape")

    @shapes.register("square")
    def make_square(side: int = 2) -> list[int]:
        return [side, side]

    @shapes.register("rectangle")
    def make_rectangle(width: int = 1, height: int = 2) -> list[int]:
        return [width, height]

    @shapes.register("anything")
    def make_anything(**kwargs: int) -> dict[str, int]:
        return kwargs

    return shapes


def test_register_create_and_names(shapes):
    assert shapes.names() == ["anything", "rectangle", "square"]
    assert shapes.create("square") == [2, 2]
    assert shapes.create("square", side=5) == [5, 5]
    assert shapes.create("rectangle", height=7) == [1, 7]
    assert shapes.create("anything", a=1, b=2) == {"a": 1, "b": 2}
    assert "square" in shapes and "circle" not in shapes


def test_register_returns_the_factory_unchanged():
    registry = Registry("thing")

    def factory() -> int:
        return 1

    assert registry.register("one")(factory) is factory
    assert registry.get("one") is factory
    # Registering the very same factory again (a module imported twice) is harmless.
    registry.register("one")(factory)
    assert registry.names() == ["one"]


def test_duplicate_name_is_an_error(shapes):
    with pytest.raises(ValueError, match="shape 'square' is already registered"):
        @shapes.register("square")
        def another_square() -> list[int]:
            return [0, 0]
    assert shapes.create("square") == [2, 2]  # the first registration survives


def test_unknown_name_lists_close_matches(shapes):
    with pytest.raises(UnknownNameError) as info:
        shapes.create("sqare")
    message = str(info.value)
    assert message.startswith("unknown shape 'sqare'")
    assert "did you mean square" in message
    assert "known: anything, rectangle, square" in message
    assert isinstance(info.value, SlimvisionError) and isinstance(info.value, KeyError)


def test_unknown_name_without_close_matches(shapes):
    with pytest.raises(UnknownNameError) as info:
        shapes.get("zzzzzz")
    assert "did you mean" not in str(info.value)
    assert "known: anything, rectangle, square" in str(info.value)
    empty = Registry("widget")
    with pytest.raises(UnknownNameError, match=r"\(known: none\)"):
        empty.get("x")


def test_unknown_keyword_is_rejected(shapes):
    with pytest.raises(TypeError, match="shape 'square' does not accept colour, depth"):
        shapes.create("square", depth=3, colour="red")


def test_artifacts_spec_names_the_magenta_teacher_files():
    spec = ARTIFACTS.spec("magenta-arbitrary-v1-int8")
    assert spec.system == "style" and spec.pipeline == "slimvision.inference.style:StyleTransferPipeline"
    assert {role: asset.resource for role, asset in spec.files.items()} == {
        "predictor": "models/arbitrary_predict.onnx", "transform": "models/arbitrary_transform.onnx"}


def test_style_settings_use_the_registered_files_and_options():
    from slimvision.artifacts import style_models
    from slimvision.inference.style import style_artifact

    assert [spec.name for spec in style_models()] == [spec.name for spec in ARTIFACTS.specs("style")]
    for spec in style_models():
        artifact = style_artifact(spec.name)
        assert artifact.name == spec.name
        assert {"predictor": artifact.predictor, "transform": artifact.transform} == dict(spec.files)
        assert {key: getattr(artifact, key) for key in spec.options} == dict(spec.options)
        assert "options" not in spec.arguments  # options are never pipeline keyword arguments


def test_style_options_that_are_wrong_are_refused_naming_the_artifact_and_the_problem():
    from dataclasses import replace

    from slimvision.errors import ConfigError
    from slimvision.inference.style import StyleArtifact

    spec = ARTIFACTS.spec("slimvision-fast-v3")
    cases = {"unknown option colour": replace(spec, options={**spec.options, "colour": "red"}),
             "precision must be one of int8, fp32": replace(spec, options={**spec.options, "precision": "fp16"}),
             "option float_predictor must be bool": replace(spec, options={**spec.options, "float_predictor": 1}),
             "pass artifact='slimvision-fast-v3'": replace(spec, arguments={"artifact": "slimvision-fast-v2"}),
             "no file for role transform": replace(spec, files={"predictor": spec.files["predictor"]})}
    for problem, wrong in cases.items():
        with pytest.raises(ConfigError, match=f"style artifact 'slimvision-fast-v3': {problem}"):
            StyleArtifact.from_spec(wrong)


def test_the_model_aliases_are_read_from_the_registrations():
    from slimvision.artifacts import STYLE_PIPELINE, artifact
    from slimvision.errors import ConfigError
    from slimvision.inference.style import ARTIFACT_BY_MODEL, artifact_for, models_by_alias

    assert models_by_alias() == ARTIFACT_BY_MODEL == {("fast", "fp32"): "slimvision-fast-v7",
                                                      ("teacher", "fp32"): "magenta-arbitrary-v1-fp32",
                                                      ("teacher", "int8"): "magenta-arbitrary-v1-int8"}
    teacher = ARTIFACTS.spec("magenta-arbitrary-v1-int8")
    int8_fast = artifact("my-fast-int8", "style", "interactive", "an int8 student", dict(teacher.files),
                         STYLE_PIPELINE, artifact="my-fast-int8", options={"precision": "int8", "alias": "fast"})
    with ARTIFACTS.temporarily(int8_fast):
        assert artifact_for("fast", "int8") == "my-fast-int8"  # read live, not from the snapshot
    clash = artifact("my-teacher", "style", "interactive", "a second teacher", dict(teacher.files),
                     STYLE_PIPELINE, artifact="my-teacher", options={"precision": "int8", "alias": "teacher"})
    with ARTIFACTS.temporarily(clash), pytest.raises(ConfigError, match="'magenta-arbitrary-v1-int8' and "
                                                                       "'my-teacher' both answer to --model teacher"):
        artifact_for("teacher")


def test_a_style_pipeline_refuses_an_artifact_of_another_system():
    from slimvision.inference.style import StyleTransferPipeline

    with pytest.raises(UnknownNameError, match="'numerals-som' is a numerals artifact, not a style model"):
        StyleTransferPipeline("numerals-som")


def test_unknown_artifact_suggests_close_names():
    with pytest.raises(UnknownNameError, match=r"unknown artifact 'vae-mni128-unt'; did you mean vae-mni128-unet"):
        ARTIFACTS.create("vae-mni128-unt")


def _fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter, so nothing this test session imported helps it."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_artifacts_list_every_system_whatever_was_imported_and_load_nothing_heavy():
    out = _fresh_python("import sys\n"
                        "from slimvision.registry import ARTIFACTS\n"
                        "print(sorted({spec.system for spec in ARTIFACTS.specs()}), len(ARTIFACTS.names()))\n"
                        "print(sorted(m for m in ('torch', 'onnxruntime', 'onnx', 'PIL') if m in sys.modules))")
    systems, heavy = out.splitlines()
    assert systems == f"['faces', 'gan', 'numerals', 'style', 'vae'] {len(ARTIFACTS.names())}"  # as this process sees
    assert heavy == "[]"


def test_models_lists_every_family_without_importing_it_first():
    torch = pytest.importorskip("torch")  # noqa: F841  (the networks are torch modules)
    out = _fresh_python("from slimvision.registry import list_models\nprint(' '.join(list_models()))")
    assert {"style-predictor-mbv2", "style-transformer", "face-detector-mtcnn-pnet", "face-embedder-dlib-resnet",
            "vae", "dcgan-generator", "dcgan-discriminator"} <= set(out.split())


def test_discovery_runs_once_and_a_failed_one_is_retried():
    calls = []

    def discover() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ImportError("first try fails")
        registry.register("late")(lambda: "found")

    registry: Registry = Registry("thing", discover=discover)
    with pytest.raises(ImportError):
        registry.names()
    assert registry.names() == ["late"] and registry.create("late") == "found"
    assert "late" in registry and len(calls) == 2


def test_shipped_weights_are_located_through_assets_only():
    """No module builds a path to the bundled weights from its own file (they move with assets)."""
    import re
    from pathlib import Path

    import slimvision

    pattern = re.compile(r"__file__\)?[^\n]*[\"']weights[\"']|parents?\b[^\n]*/ [\"']weights[\"']")
    root = Path(slimvision.__file__).parent
    found = [str(path.relative_to(root)) for path in sorted(root.rglob("*.py"))
             if path.name != "assets.py" and pattern.search(path.read_text())]
    # The MTCNN exporter writes (not reads) the shipped graphs.
    assert found in ([], ["export/faces.py"]), found


def test_artifacts_take_specs_only():
    with pytest.raises(TypeError, match="ARTIFACTS.add"):
        ARTIFACTS.register("a-function")
    with pytest.raises(TypeError, match="ArtifactSpec records, got function"):
        ARTIFACTS.add(lambda: None)  # type: ignore[arg-type]
    spec = ARTIFACTS.spec("numerals-som")
    with pytest.raises(ValueError, match="already registered"):
        ARTIFACTS.add(replace(spec, purpose="another"))
    with pytest.raises(ValueError, match="speed 'quick' is not one of realtime, interactive, batch"):
        replace(spec, speed="quick")
    with pytest.raises(ValueError, match=r"file_arguments name roles it has no file for: \['graph'\]"):
        replace(spec, file_arguments={"som": "graph"})
