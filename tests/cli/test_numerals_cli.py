"""``slimvision numerals ...`` end to end on generated files: render, train, eval, read, map, bad input."""

from __future__ import annotations

import json

import pytest

from slimvision.cli.main import main
from slimvision.data.numerals import NoiseConfig, find_fonts, render_page, split_fonts
from slimvision.io.images import save_image


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    train, _ = split_fonts(find_fonts())
    face = [font for font in train if font.name == "DejaVuSerif"]
    page, _ = render_page([14, 1994], face, seed=4, noise=NoiseConfig(level=0.3), size=(500, 600))
    return save_image(page, tmp_path_factory.mktemp("pages") / "page.png")


def test_read_prints_json_with_values_boxes_and_an_annotated_page(page_file, tmp_path, capsys):
    annotated = tmp_path / "page_read.png"
    assert main(["numerals", "read", str(page_file), "--json", "--annotate", str(annotated)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["page"] == str(page_file)
    assert sorted(numeral["value"] for numeral in result["numerals"]) == [14, 1994]
    assert all(len(numeral["box"]) == 4 and numeral["standard"] for numeral in result["numerals"])
    assert annotated.is_file()


def test_read_refuses_bad_pages_in_one_line(tmp_path, page_file, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["numerals", "read", str(broken)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "broken.png" in err and "\n" not in err
    assert main(["numerals", "read", str(page_file), "--max-pixels", "1000"]) != 0
    assert "pixels" in capsys.readouterr().err
    assert main(["numerals", "read", str(tmp_path / "missing.png")]) != 0
    assert "missing.png" in capsys.readouterr().err


def test_read_never_overwrites_the_page(page_file, capsys):
    before = page_file.read_bytes()
    assert main(["numerals", "read", str(page_file), "--annotate", str(page_file), "--overwrite"]) != 0
    assert page_file.read_bytes() == before
    assert "error: " in capsys.readouterr().err


def test_train_eval_and_map_on_a_tiny_map(tmp_path, capsys):
    folder = tmp_path / "map"
    assert main(["numerals", "train", "-o", str(folder), "--rows", "6", "--cols", "6", "--epochs", "3",
                 "--samples", "700", "--other-samples", "470", "--lvq-epochs", "2", "--lattice", "hex",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert 0.5 < summary["symbol_accuracy"] <= 1 and summary["samples"] == 700
    assert 0 <= summary["other_rejected"] <= 1
    for name in ("config.json", "map.npz", "training.json", "report.json", "errors.png"):
        assert (folder / name).is_file(), name
    assert main(["numerals", "train", "-o", str(folder)]) != 0          # no silent replacement
    assert "already there" in capsys.readouterr().err

    assert main(["numerals", "eval", "--map", str(folder), "--levels", "0,1", "--symbols", "70",
                 "--numerals", "10", "--json", "--plot", str(tmp_path / "curve.png")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["noise"] for row in rows] == [0.0, 1.0] and (tmp_path / "curve.png").is_file()
    assert all(0 <= row["text_false_alarms"] <= 1 and row["words"] > 100 for row in rows)
    assert all(0 <= row["line_accuracy"] <= 1 and row["lines"] == 10 for row in rows)

    assert main(["numerals", "map", "--map", str(folder), "-o", str(tmp_path / "pictures")]) == 0
    assert {p.name for p in (tmp_path / "pictures").iterdir()} == {"umatrix.png", "labels.png", "prototypes.png"}


def test_train_help_states_the_training_configs_defaults(capsys):
    from slimvision.training.numerals import NumeralTrainingConfig

    defaults = NumeralTrainingConfig()
    with pytest.raises(SystemExit):
        main(["numerals", "train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for stated in (f"rows (default {defaults.som.rows})", f"columns (default {defaults.som.cols})",
                   f"epochs (default {defaults.som.epochs})", f"symbols (default {defaults.samples})",
                   f"(default {defaults.other_samples};", f"labelling (default {defaults.lvq_epochs};"):
        assert stated in text, stated


def test_render_writes_images_and_truth(tmp_path, capsys):
    assert main(["numerals", "render", "-o", str(tmp_path / "pages"), "--kind", "pages", "--count", "1"]) == 0
    truth = json.loads((tmp_path / "pages" / "truth.json").read_text())
    assert truth[0]["file"] == "page_00000.png" and len(truth[0]["numerals"]) == 6
    assert main(["numerals", "render", "-o", str(tmp_path / "symbols"), "--kind", "symbols", "--count", "7"]) == 0
    assert len(list((tmp_path / "symbols").glob("symbol_*.png"))) == 7


def test_bad_arguments_fail_cleanly(tmp_path, capsys):
    assert main(["numerals", "eval", "--map", str(tmp_path / "nowhere")]) != 0
    assert "not a map folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["numerals", "eval", "--levels", "a,b"])
    assert main(["numerals", "render", "-o", str(tmp_path / "x"), "--count", "0"]) != 0
    assert "--count must be at least 1" in capsys.readouterr().err
