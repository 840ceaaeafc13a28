"""CAT dataset preparation on fixtures in the exact .cat format: parsing, head geometry, fixes, outliers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from slimvision.data.cats import (BROKEN_ANNOTATION, STRAY_ANNOTATION, crop_box, crop_head, outlier_names,
                                  parse_cat_text, prepare_cats)
from slimvision.errors import InputError


def head_points(centre=(100.0, 100.0), scale=20.0, degrees=0.0) -> np.ndarray:
    """A plausible cat head: eyes, mouth and two 3-point ears, turned by ``degrees``."""
    layout = np.array([[-1, 0], [1, 0], [0, 1.2], [-1.8, -0.6], [-1.5, -2.2], [-0.6, -1.2],
                       [0.6, -1.2], [1.5, -2.2], [1.8, -0.6]], np.float64) * scale
    theta = math.radians(degrees)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return layout @ rotation.T + np.asarray(centre)


def cat_text(points: np.ndarray) -> str:
    return "9 " + " ".join(f"{value:.0f}" for value in points.reshape(-1)) + " "


def photo_with_eyes(points: np.ndarray, size: int = 200) -> np.ndarray:
    image = np.full((size, size, 3), 128, np.uint8)
    for (x, y), colour in zip(points[:2], [(255, 0, 0), (0, 0, 255)]):
        image[int(round(y)) - 2: int(round(y)) + 3, int(round(x)) - 2: int(round(x)) + 3] = colour
    return image


def test_parse_reads_nine_points_and_names_the_file_on_errors():
    points = parse_cat_text(cat_text(head_points()), "a.cat")
    assert points.shape == (9, 2)
    for text, message in [("", "says nothing"), ("8 1 2", "expected 9 points"), ("9 1 2 3", "expected 18"),
                          ("9 a b", "numbers")]:
        with pytest.raises(InputError, match=message) as caught:
            parse_cat_text(text, "broken.jpg.cat")
        assert "broken.jpg.cat" in str(caught.value)


@pytest.mark.parametrize("degrees", [0.0, 25.0, -40.0])
def test_the_box_levels_the_eyes_and_holds_every_point(degrees):
    points = head_points(degrees=degrees)
    (cx, cy), side, angle = crop_box(points)
    assert angle == pytest.approx(degrees, abs=1e-6)
    assert side == pytest.approx(3.6 * 20.0, rel=1e-6)          # the ears span 3.6 scale units
    assert np.hypot(*(np.array([cx, cy]) - points.mean(axis=0))) < side / 2


@pytest.mark.parametrize("degrees", [0.0, 30.0, -20.0])
def test_a_turned_head_comes_out_with_level_eyes(degrees):
    points = head_points(degrees=degrees)
    crop, side = crop_head(photo_with_eyes(points), points, 64)
    assert crop.shape == (64, 64, 3) and side == pytest.approx(72.0)
    red = np.argwhere((crop[..., 0] > 200) & (crop[..., 2] < 80)).mean(axis=0)
    blue = np.argwhere((crop[..., 2] > 200) & (crop[..., 0] < 80)).mean(axis=0)
    assert abs(red[0] - blue[0]) < 1.0                           # same row: level
    assert red[1] < blue[1]                                      # left eye stays on the left


def test_a_head_near_the_edge_is_padded_with_edge_colours_not_black():
    points = head_points(centre=(20.0, 20.0))
    crop, _ = crop_head(photo_with_eyes(points, size=120), points, 32)
    assert not (crop.sum(axis=2) == 0).any()                    # no black pixel: the grey edge was extended


def test_the_outlier_list_ships_with_the_package():
    names = outlier_names()
    assert 120 < len(names) < 150 and "00000004_007.jpg" in names and all(name.endswith(".jpg") for name in names)


def test_prepare_applies_the_fixes_drops_outliers_and_buckets_by_size(tmp_path):
    source = tmp_path / "cats"
    folder = source / "CAT_00"
    folder.mkdir(parents=True)
    big, small = head_points(scale=40.0, degrees=10.0), head_points(scale=20.0)
    fixtures = {"00000001_000.jpg": big, "00000001_001.jpg": small, "00000004_007.jpg": big,
                "00000003_019.jpg": big, "00000003_015.jpg": big}
    for name, points in fixtures.items():
        Image.fromarray(photo_with_eyes(points)).save(folder / name, quality=95)
        if name != "00000003_015.jpg":
            (folder / (name + ".cat")).write_text(cat_text(points))
    (source / STRAY_ANNOTATION).write_text(cat_text(big))       # shipped outside its folder
    report = prepare_cats(source, tmp_path / "out")
    assert report.kept == {"64": 3, "128": 2}                    # 001_000 and 003_015 reach 128; 001_001 only 64
    assert report.dropped["outlier (cat_outliers.txt)"] == ["00000004_007.jpg"]
    assert report.dropped["no usable annotation"] == ["00000003_019.jpg"]   # BROKEN_ANNOTATION
    assert BROKEN_ANNOTATION.startswith("00000003_019")
    assert sorted(p.name for p in (tmp_path / "out" / "128").iterdir()) == ["00000001_000.png", "00000003_015.png"]
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["kept"] == report.kept
    with pytest.raises(InputError, match="not a folder"):
        prepare_cats(tmp_path / "missing", tmp_path / "out2")


def test_the_cli_prepares_and_reports(tmp_path, capsys):
    from slimvision.cli.main import main

    folder = tmp_path / "cats" / "CAT_01"
    folder.mkdir(parents=True)
    points = head_points(scale=40.0)
    Image.fromarray(photo_with_eyes(points)).save(folder / "00000100_000.jpg")
    (folder / "00000100_000.jpg.cat").write_text(cat_text(points))
    assert main(["gan", "prepare-cats", str(tmp_path / "cats"), "-o", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kept"] == {"64": 1, "128": 1}
    assert main(["gan", "prepare-cats", str(tmp_path / "cats"), "-o", str(tmp_path / "out"), "-q"]) != 0
    assert "exists" in capsys.readouterr().err                   # no silent replacement
    assert main(["gan", "prepare-cats", str(tmp_path / "nowhere"), "-o", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err
    assert "nowhere" in err and "not a folder" in err


def test_any_image_folder_gives_centre_squares_and_lists_broken_files(tmp_path, capsys):
    from slimvision.cli.main import main

    folder = tmp_path / "photos" / "trip"
    folder.mkdir(parents=True)
    wide = np.zeros((100, 160, 3), np.uint8)
    wide[:, 30:130] = 200                                        # the centre square is the bright part
    Image.fromarray(wide).save(folder / "wide.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "tiny.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    assert main(["gan", "prepare-images", str(tmp_path / "photos"), "-o", str(tmp_path / "out"), "--sizes", "64",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kept"] == {"64": 1}
    assert report["dropped"]["smaller than 64 px"] == ["tiny.png"]
    assert [name for reason, names in report["dropped"].items() if reason.startswith("unreadable")
            for name in names] == ["broken.jpg"]
    crop = np.asarray(Image.open(tmp_path / "out" / "64" / "trip_wide.png"))
    assert crop.shape == (64, 64, 3) and crop.min() > 150
