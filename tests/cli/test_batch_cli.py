"""slimvision batch end to end on generated files (local worker pool; Ray: tests/inference/test_batch_ray.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli.helpers import exit_code, one_line_error
from tests.conftest import save_png

STYLE = Path(__file__).resolve().parents[2] / "src" / "slimvision" / "samples" / "styles" / "starry_night.jpg"


def photos(folder: Path, count: int = 2, size: int = 64) -> Path:
    rng = np.random.default_rng(2)
    for index in range(count):
        save_png(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), folder / f"p{index}.png")
    return folder


def test_style_batch_writes_pngs_and_a_manifest_and_resumes(tmp_path, capsys):
    source = photos(tmp_path / "in")
    assert exit_code(["batch", "style", source, "-o", tmp_path / "out", "--style", STYLE, "-q"]) == 0
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["manifest.jsonl", "p0.png", "p1.png"]
    capsys.readouterr()
    assert exit_code(["batch", "style", source, "-o", tmp_path / "out", "--style", STYLE, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["done"], summary["skipped"], summary["engine"]) == (0, 2, "local")


def test_faces_embed_writes_one_json_per_image_and_a_bad_file_exits_1(tmp_path, capsys):
    source = photos(tmp_path / "in", count=1)
    (source / "broken.jpg").write_bytes(b"no")
    (tmp_path / "list.csv").write_text("path\nin/p0.png\nin/broken.jpg\n")
    assert exit_code(["batch", "faces-embed", tmp_path / "list.csv", "-o", tmp_path / "out", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["done"] == 1 and summary["failed"][0]["input"].endswith("broken.jpg")
    result = json.loads((tmp_path / "out" / "p0.json").read_text())
    assert result["faces"] == [] and result["embedder"]["dim"] == 128


@pytest.mark.parametrize("argv, problem", [
    (["batch", "vae-denoise", "nowhere", "-o", "out"], "nowhere: not found"),
    (["batch", "vae-denoise", "--ray", "nowhere/", "-o", "out"], "not a Ray address"),
    (["batch", "style", "in", "-o", "out", "--style", "none.jpg"], "style file not found"),
    (["batch", "vae-denoise", "in", "-o", "in/p0.png"], "is a file"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, monkeypatch, argv, problem):
    monkeypatch.chdir(tmp_path)
    photos(tmp_path / "in", count=1)
    assert exit_code(argv) == 2
    assert problem in one_line_error(capsys)


@pytest.mark.parametrize("argv, problem", [
    (["batch", "faces-embed", "in", "-o", "out", "--model", "magenta-arbitrary-v1-fp32"], "not a face embedder"),
    (["batch", "faces-embed", "in", "-o", "out", "--model", "nope"], "not a face embedder"),
    (["batch", "vae-denoise", "in", "-o", "out", "--model", "in"], "not an exported VAE"),
])
def test_a_model_that_does_not_load_leaves_no_folder_and_no_manifest(tmp_path, capsys, monkeypatch, argv, problem):
    """A manifest naming a job that never ran would refuse the corrected rerun as 'another job'."""
    monkeypatch.chdir(tmp_path)
    photos(tmp_path / "in", count=1)
    assert exit_code(argv) == 2
    assert problem in one_line_error(capsys)
    assert not (tmp_path / "out").exists()
    assert exit_code(["batch", "vae-denoise", "in", "-o", "out", "-q"]) == 0


@pytest.mark.parametrize("argv", [["batch", "faces-embed", "in", "-o", "out", "--model", "bare.onnx"],
                                  ["faces", "verify", "in/p0.png", "in/p0.png", "--model", "bare.onnx"]])
def test_an_embedder_graph_without_its_card_is_refused(tmp_path, capsys, monkeypatch, argv):
    """It was read as dlib's ResNet (the default card): its descriptors labelled dlib-resnet v1."""
    monkeypatch.chdir(tmp_path)
    photos(tmp_path / "in", count=1)
    (tmp_path / "bare.onnx").write_bytes(b"any graph")
    assert exit_code(argv) == 2
    assert "bare.onnx: no card beside it (bare.card.json)" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_ray_addresses_accepted_by_the_parser():
    from slimvision.cli.main import build_parser

    parser = build_parser()
    for value, expected in [(None, "local"), ("auto", "auto"), ("ray://head:10001", "ray://head:10001"),
                            ("10.0.0.5:6379", "10.0.0.5:6379")]:
        flag = ["--ray"] if value is None else [f"--ray={value}"]
        args = parser.parse_args(["batch", "vae-denoise", "in", "-o", "out", *flag])
        assert args.ray == expected
