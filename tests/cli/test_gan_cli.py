"""``slimvision gan generate`` from the shipped digits generator (ONNX Runtime only): outputs and numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli.helpers import exit_code, one_line_error


def run(*args: str | Path) -> int:
    """The exit code of ``slimvision gan ARGS``, argparse's refusals (SystemExit) included."""
    return exit_code(["gan", *args])


def test_a_file_name_for_several_images_is_refused_not_made_a_folder(tmp_path, capsys):
    assert run("generate", "-o", tmp_path / "x.jpg", "-n", "3") == 2
    err = one_line_error(capsys)
    assert "x.jpg: looks like a file name, but this run writes 3 outputs" in err and ".png or .gif" in err
    assert list(tmp_path.iterdir()) == []
    assert run("generate", "-o", f"{tmp_path / 'x.jpg'}/", "-n", "3") == 0
    assert sorted(p.name for p in (tmp_path / "x.jpg").iterdir()) == [f"sample_0000{i}.png" for i in range(3)]
    (tmp_path / "grid.png").mkdir()  # an existing folder is used as one, whatever its name
    assert run("generate", "-o", tmp_path / "grid.png", "-n", "2") == 0
    assert len(list((tmp_path / "grid.png").iterdir())) == 2


def test_every_output_is_checked_before_drawing(tmp_path, capsys):
    out = tmp_path / "many"
    out.mkdir()
    (out / "sample_00002.png").write_bytes(b"mine")
    assert run("generate", "-o", out, "-n", "4") == 2
    assert "sample_00002.png: exists" in one_line_error(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["sample_00002.png"]


def test_the_generator_is_never_an_output(tmp_path, capsys):
    from slimvision.inference.gan import DEMO_GENERATOR

    model = tmp_path / "generator.png"  # a graph under an image's name: still an input
    model.write_bytes(DEMO_GENERATOR.read_bytes())
    assert run("generate", model, "-o", model, "--overwrite", "-n", "2") == 2
    assert "generator.png: is an input file" in one_line_error(capsys)
    assert model.read_bytes() == DEMO_GENERATOR.read_bytes()


@pytest.mark.parametrize("argv, message", [
    (["-n", "0"], "--count must be at least 1"),
    (["-n", "1e9"], "--count must be a whole number"),
    (["--seed", "-1"], "--seed must be at least 0"),
    (["--columns", "nan"], "--columns must be a whole number"),
    (["--interpolate", "3", "-4"], "--interpolate must be at least 0"),
])
def test_bad_numbers_are_refused_in_one_line(tmp_path, capsys, argv, message):
    assert run("generate", "-o", tmp_path / "g.png", *argv) == 2
    assert one_line_error(capsys).startswith(f"error: {message}")
    assert not (tmp_path / "g.png").exists()


def test_the_largest_seed_and_options_in_any_order(tmp_path):
    out = tmp_path / "g.png"
    assert run("generate", "-n", "2", "--seed", str(2**32 - 1), "-o", out, "--columns", "2") == 0
    assert np.asarray(Image.open(out)).shape[1] > np.asarray(Image.open(out)).shape[0]  # a 2-wide grid


def test_a_run_folder_inside_its_training_data_is_refused(tmp_path, capsys):
    pytest.importorskip("torch")
    data = tmp_path / "crops"
    data.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(data / "a.png")
    assert run("train", data, "-o", data / "run", "--resolution", "16", "--steps", "1") == 2
    assert "run: is inside the input folder" in one_line_error(capsys)
    assert sorted(p.name for p in data.iterdir()) == ["a.png"]


def test_crops_never_go_inside_the_folder_they_are_cut_from(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((80, 96, 3), 128, np.uint8)).save(photos / "a.png")
    assert run("prepare-images", photos, "-o", photos / "crops", "--sizes", "64", "-q") == 2
    assert "crops: is inside the input folder" in one_line_error(capsys)
    assert sorted(p.name for p in photos.iterdir()) == ["a.png"]
    assert run("prepare-images", photos, "-o", tmp_path / "crops", "--sizes", "64", "-q") == 0
    assert (tmp_path / "crops" / "64").is_dir()


def test_without_a_model_generate_draws_from_the_registered_generator(tmp_path):
    """The shipped generator is found by its registered name: registered on another graph, the
    command draws from that one (here a 4 px test generator), with nothing else changed."""
    from dataclasses import replace

    from slimvision.assets import LocalPath
    from slimvision.cli.gan import GENERATOR
    from slimvision.registry import ARTIFACTS
    from tests.test_registry_artifacts import TINY_SIDE, tiny_generator

    (tmp_path / "graph").mkdir()
    graph, _ = tiny_generator(tmp_path / "graph")
    shipped = ARTIFACTS.spec(GENERATOR)
    with ARTIFACTS.temporarily(replace(shipped, files={"generator": LocalPath(graph)})):
        assert run("generate", "-o", tmp_path / "grid.png", "-n", "2", "--columns", "2") == 0
    gap = 2  # io.pixels.tile's white border
    assert np.asarray(Image.open(tmp_path / "grid.png")).shape == (TINY_SIDE + 2 * gap, 2 * TINY_SIDE + 3 * gap, 3)
    assert ARTIFACTS.spec(GENERATOR) is shipped
