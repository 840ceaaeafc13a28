"""``slimvision train style-data``: the family list and split, the preview sheet; ``--style-data families`` trains."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from slimvision.cli.main import main
from slimvision.data.style_families import FAMILIES, LABEL_WIDTH, split_families


def test_json_lists_every_family_and_the_split(capsys):
    assert main(["train", "style-data", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    train, held_out = split_families()
    assert listed["train"] == list(train) and listed["held_out"] == list(held_out)
    assert set(listed["about"]) == set(FAMILIES) and listed["sheet"] is None


def test_the_sheet_has_a_labelled_row_per_family(tmp_path, capsys):
    sheet = tmp_path / "families.png"
    assert main(["train", "style-data", "--sheet", str(sheet), "--per-family", "2", "--tile", "32"]) == 0
    assert "held out" in capsys.readouterr().out
    pixels = np.asarray(Image.open(sheet).convert("RGB"))
    assert pixels.shape == (32 * len(FAMILIES), LABEL_WIDTH + 2 * 32, 3)
    labels = pixels[:, :LABEL_WIDTH].astype(int)
    red = (labels[..., 0] > 150) & (labels[..., 1] < 90) & (labels[..., 2] < 90)  # the "held out" tags
    rows_with_red = {row // 32 for row in np.nonzero(red.any(axis=1))[0]}
    names = list(FAMILIES)
    assert {names[row] for row in rows_with_red} == set(split_families()[1])
    assert main(["train", "style-data", "--sheet", str(sheet)]) != 0  # no silent overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_a_palette_sheet_is_small_and_needs_a_png(tmp_path, capsys):
    sheet = tmp_path / "families.png"
    assert main(["train", "style-data", "--sheet", str(sheet), "--per-family", "2", "--tile", "32",
                 "--colours", "16", "--real-palettes"]) == 0
    with Image.open(sheet) as image:
        assert image.mode == "P" and len(image.getcolors()) <= 16
    assert main(["train", "style-data", "--sheet", str(tmp_path / "f.jpg"), "--colours", "16"]) != 0
    assert "palette PNG" in capsys.readouterr().err and not (tmp_path / "f.jpg").exists()


def test_the_predictor_trains_on_the_families(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("torch_pruning")
    run = tmp_path / "run"
    assert main(["train", "style-predictor", "--run-dir", str(run), "--width", "0.1", "--last-channels", "32",
                 "--steps", "2", "--batch-size", "2", "--samples", "4", "--json", "--style-data", "families"]) == 0
    assert json.loads(capsys.readouterr().out)["steps_done"] == 2
    report = json.loads((run / "report.json").read_text())
    assert report["config"]["style_data"] == "families"
    held_out = set(report["held_out"]["per_image"])
    assert "slimvision/starry_night.jpg" in held_out and "matplotlib/grace_hopper.jpg" in held_out
    cached = {path.stem for path in (run / "teacher-cache").rglob("*.npy")}
    assert cached and all("fam" in name for name in cached)  # the family samples' ids
