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


@pytest.fixture(scope="module")
def page_and_truth(tmp_path_factory):
    train, _ = split_fonts(find_fonts())
    face = [font for font in train if font.name == "DejaVuSerif"]
    page, placed = render_page([14, 1994], face, seed=4, noise=NoiseConfig(level=0.3), size=(500, 600))
    return save_image(page, tmp_path_factory.mktemp("boxes") / "page.png"), dict(placed)


def test_read_prints_json_with_values_xyxy_boxes_and_an_annotated_page(page_and_truth, tmp_path, capsys):
    page_file, truth = page_and_truth
    annotated = tmp_path / "page_read.png"
    assert main(["numerals", "read", str(page_file), "--json", "--annotate", str(annotated)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["page"] == str(page_file) and result["box_format"] == "xyxy"
    assert sorted(numeral["value"] for numeral in result["numerals"]) == [14, 1994]
    for numeral in result["numerals"]:
        top, left, bottom, right = truth[numeral["value"]]            # render_page: (top, left, bottom, right)
        x0, y0, x1, y1 = numeral["box"]
        assert max(abs(x0 - left), abs(y0 - top), abs(x1 - right), abs(y1 - bottom)) <= 3, numeral["box"]
        assert numeral["standard"] and all(len(symbol["box"]) == 4 for symbol in numeral["symbols"])
        assert all(x0 <= symbol["box"][0] < symbol["box"][2] <= x1 for symbol in numeral["symbols"])
    assert annotated.is_file()
    assert main(["numerals", "read", str(page_file)]) == 0
    text = capsys.readouterr().out
    for numeral in result["numerals"]:
        assert f"box {','.join(map(str, numeral['box']))}" in text


def test_several_pages_need_a_folder_to_annotate_and_go_on_past_a_bad_page(page_file, tmp_path, capsys):
    second = tmp_path / "second.png"
    second.write_bytes(page_file.read_bytes())
    pages = [str(page_file), str(second)]
    # A file-like name for several annotated pages is refused before anything is read or written.
    assert main(["numerals", "read", *pages, "--annotate", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "x.png" in err and "folder" in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()
    # With a trailing '/', the name is a folder.
    assert main(["numerals", "read", *pages, "--annotate", str(tmp_path / "x.png") + "/", "-q"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "x.png").iterdir()) == ["page_numerals.png", "second_numerals.png"]
    # A bad page in the middle: the others are read, the failure is named at the end, exit 1.
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["numerals", "read", str(page_file), str(broken), str(second), "--json"]) == 1
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["box_format"] == "xyxy" and [page["page"] for page in result["pages"]] == [str(page_file), str(second)]
    assert [item["page"] for item in result["failed"]] == [str(broken)]
    assert err.strip().startswith("failed: ") and "broken.png" in err and err.strip().count("\n") == 0
    # Two pages that would be annotated under one name are refused up front.
    other = tmp_path / "other"
    other.mkdir()
    (other / "page.png").write_bytes(page_file.read_bytes())
    assert main(["numerals", "read", str(page_file), str(other / "page.png"), "--annotate", str(tmp_path / "out")]) == 2
    assert "both be annotated" in capsys.readouterr().err


def test_read_names_a_damaged_map_in_one_line(page_file, tmp_path, capsys):
    import shutil

    from slimvision.inference.numerals import DEFAULT_MAP

    folder = tmp_path / "map"
    shutil.copytree(DEFAULT_MAP, folder)
    whole = (folder / "map.npz").read_bytes()
    (folder / "map.npz").write_bytes(whole[: len(whole) // 3])
    assert main(["numerals", "read", str(page_file), "--map", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "map.npz" in err and err.count("\n") == 1


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
    assert main(["numerals", "render", "-o", str(tmp_path / "pages"), "--kind", "pages", "--count", "1", "-q"]) == 0
    truth = json.loads((tmp_path / "pages" / "truth.json").read_text())
    assert truth["box_format"] == "xyxy" and truth["files"][0]["file"] == "page_00000.png"
    numerals = truth["files"][0]["numerals"]
    assert len(numerals) == 6 and all(box[0] < box[2] and box[1] < box[3] for box in (n["box"] for n in numerals))
    assert main(["numerals", "render", "-o", str(tmp_path / "symbols"), "--kind", "symbols", "--count", "7"]) == 0
    assert len(list((tmp_path / "symbols").glob("symbol_*.png"))) == 7
    assert main(["numerals", "render", "-o", str(tmp_path / "x.png"), "--count", "2"]) == 2
    assert "x.png" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


def test_bad_arguments_fail_cleanly(tmp_path, capsys):
    assert main(["numerals", "eval", "--map", str(tmp_path / "nowhere")]) != 0
    assert "not a map folder" in capsys.readouterr().err


@pytest.mark.parametrize("command", [
    ["render", "-o", "{tmp}/r", "--count", "{bad}"], ["render", "-o", "{tmp}/r", "--noise", "{bad}"],
    ["render", "-o", "{tmp}/r", "--seed", "{bad}"], ["train", "-o", "{tmp}/m", "--rows", "{bad}"],
    ["train", "-o", "{tmp}/m", "--epochs", "{bad}"], ["train", "-o", "{tmp}/m", "--samples", "{bad}"],
    ["train", "-o", "{tmp}/m", "--other-samples", "{bad}"], ["train", "-o", "{tmp}/m", "--lvq-epochs", "{bad}"],
    ["eval", "--levels", "{bad}"], ["eval", "--symbols", "{bad}"], ["eval", "--numerals", "{bad}"],
    ["read", "{tmp}/p.png", "--max-pixels", "{bad}"],
])
@pytest.mark.parametrize("bad", ["-1", "nan", "inf", "1e30", "x"])
def test_numeric_options_refuse_bad_numbers_in_one_line(tmp_path, capsys, command, bad):
    args = [part.format(tmp=tmp_path, bad=bad) for part in command]
    with pytest.raises(SystemExit) as exit_info:
        main(["numerals", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") <= 1 and args[-2] in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())     # nothing written


def test_json_is_a_switch_and_quiet_is_accepted_on_commands_with_a_bar(capsys):
    for command in (["render", "-o", "x"], ["train", "-o", "x"], ["eval"], ["read", "p.png"]):
        with pytest.raises(SystemExit):
            main(["numerals", *command, "--help"])
        help_text = capsys.readouterr().out
        assert "-q, --quiet" in help_text, command
    for command in (["train", "-o", "x"], ["eval"], ["read", "p.png"]):
        with pytest.raises(SystemExit):
            main(["numerals", *command, "--help"])
        help_text = capsys.readouterr().out
        assert "--json " in help_text and "--json JSON" not in help_text, command


@pytest.mark.parametrize("command", [["read", "PAGE"], ["map", "-o", "OUT"]])
def test_without_a_map_the_registered_reader_runs(page_file, tmp_path, capsys, command):
    """The shipped map is found by its registered name: registered on another folder (here a
    damaged copy), read and map load that one and name it."""
    import shutil
    from dataclasses import replace

    from slimvision.assets import LocalPath
    from slimvision.cli.numerals import READER
    from slimvision.registry import ARTIFACTS

    shipped = ARTIFACTS.spec(READER)
    folder = tmp_path / "registered-map"
    shutil.copytree(shipped.paths()["map"], folder)
    whole = (folder / "map.npz").read_bytes()
    (folder / "map.npz").write_bytes(whole[: len(whole) // 3])
    argv = [{"PAGE": str(page_file), "OUT": str(tmp_path / "out")}.get(part, part) for part in command]
    with ARTIFACTS.temporarily(replace(shipped, files={"map": LocalPath(folder)})):
        assert main(["numerals", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "registered-map" in err and "map.npz" in err
