"""``slimvision compress search`` end to end on a tiny predictor candidate, its resume, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.helpers import exit_code, one_line_error

TINY = [{"name": "tiny", "width_multiplier": 0.1, "last_channels": 32, "stem_stride": 4,
         "stage_repeats": [1, 1, 1, 1, 1, 1, 1]},
        {"name": "tiny-deeper", "width_multiplier": 0.1, "last_channels": 32, "stem_stride": 4,
         "stage_repeats": [1, 2, 2, 2, 2, 2, 1]}]


@pytest.fixture
def candidates(tmp_path):
    path = tmp_path / "candidates.json"
    path.write_text(json.dumps(TINY))
    return path


def test_a_search_trains_one_front_runner_and_a_rerun_skips_it(tmp_path, candidates, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("torch_pruning")
    out = tmp_path / "search"
    argv = ["compress", "search", "--student", "predictor", "--budget-ms", "100000", "--front", "1",
            "--train-steps", "1", "--batch-size", "2", "--repeats", "1", "--threads", "2",
            "--candidates", candidates, "-o", out, "-q"]
    assert exit_code(argv) == 0
    printed = capsys.readouterr().out
    assert "[ref] teacher predictor int8" in printed and "tiny-deeper" in printed and "front.png" in printed
    report = json.loads((out / "search.json").read_text())
    rows = {row["name"]: row for row in report["candidates"]}
    # one front runner: the one with the most parameters within the budget
    assert rows["tiny-deeper"]["params"] > rows["tiny"]["params"]
    assert rows["tiny-deeper"]["fidelity"] is not None and rows["tiny"]["fidelity"] is None
    assert report["front"] == ["tiny-deeper"]
    assert rows["tiny-deeper"]["fidelity_details"]["metric"].startswith("held-out style-vector R²")
    result = out / "candidates" / "tiny-deeper" / "result.json"
    assert (out / "front.png").is_file() and result.is_file()
    written = result.stat().st_mtime_ns

    assert exit_code(argv + ["--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    rerun = {row["name"]: row for row in again["candidates"]}
    assert rerun["tiny-deeper"]["resumed"] and rerun["tiny-deeper"]["fidelity"] == rows["tiny-deeper"]["fidelity"]
    assert result.stat().st_mtime_ns == written


def test_time_only_writes_the_table_without_training(tmp_path, candidates, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "timing"
    assert exit_code(["compress", "search", "--student", "predictor", "--budget-ms", "1e-3", "--front", "0",
                      "--repeats", "1", "--candidates", candidates, "-o", out, "-q"]) == 0
    assert "over" in capsys.readouterr().out
    report = json.loads((out / "search.json").read_text())
    assert sorted(report["over_budget"]) == ["tiny", "tiny-deeper"] and not (out / "candidates").exists()


@pytest.mark.parametrize("extra, message", [
    (["--student", "vae"], "invalid choice"),
    (["--budget-ms", "0"], "--budget-ms must be more than 0"),
    (["--budget-ms", "nan"], "--budget-ms must be a finite number"),
    (["--front", "-1"], "--front must be at least 0"),
    (["--train-steps", "0"], "--train-steps must be at least 1"),
    (["--sizes", "512,12x"], "--sizes must be sides or WIDTHxHEIGHT"),
    (["--sizes", "8"], "each side must be 16"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, extra, message):
    argv = ["compress", "search", "--student", "predictor", "--budget-ms", "10", "-o", tmp_path / "s", *extra]
    assert exit_code(argv) == 2
    assert message in one_line_error(capsys)


def test_missing_required_arguments_are_named(tmp_path, capsys):
    assert exit_code(["compress", "search", "--budget-ms", "10", "-o", tmp_path]) == 2
    assert "--student" in one_line_error(capsys)


@pytest.mark.parametrize("setup, extra, message", [
    (lambda tmp: (tmp / "file").write_text("x"), ["-o", "{tmp}/file"], "is a file"),
    (lambda tmp: None, ["--candidates", "{tmp}/none.json"], "no such file"),
    (lambda tmp: (tmp / "bad.json").write_text('[{"name": "a", "width": 1}]'), ["--candidates", "{tmp}/bad.json"],
     "unknown knob(s) 'width'"),
    (lambda tmp: None, ["--sizes", "512"], "--sizes is for --student transformer"),
])
def test_bad_inputs_are_one_line_errors_before_any_work(tmp_path, capsys, setup, extra, message):
    setup(tmp_path)
    argv = ["compress", "search", "--student", "predictor", "--budget-ms", "10", "-o", tmp_path / "out",
            *[part.format(tmp=tmp_path) for part in extra]]
    assert exit_code(argv) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "out" / "search.json").exists()


def test_gptq_writes_a_4_bit_predictor_that_agrees_with_torch_and_scores_held_out_styles(tmp_path, capsys):
    pytest.importorskip("torch")
    run = tmp_path / "gptq"
    assert exit_code(["compress", "gptq", "--run-dir", run, "--calibration", "8", "--tune-steps", "2",
                      "--wide-budget-kb", "40", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "35 layers" in printed and "held-out families" in printed and "at 8 bits instead" in printed
    report = json.loads((run / "report.json").read_text())
    card = json.loads((run / "predictor.int4w.card.json").read_text())
    assert card["parity"]["max_abs_diff"] < 1e-4  # the int4 graph computes what the scored torch model does
    assert report["pipeline_model"]["bytes"] < 0.6 * report["pipeline_model"]["teacher_bytes"]
    # Even 8 calibration images keep the vectors far closer than any distilled student (R² 0.52 on families).
    assert report["held_out"]["r2"] > 0.9 and report["held_out_families"]["vectors"]["r2"] > 0.9
    assert report["held_out_families"]["output_space"]["paintings"] > 0
    assert report["tuning"]["steps"] == 2  # the scales were fine-tuned after GPTQ
    wide = report["wide_layers"]  # measured sensitivity chose some layers for 8 bits, within the budget
    assert wide["layers"] and 0 < wide["extra_bytes"] <= 40_000 and len(wide["sensitivity"]) == 35
    assert f"({len(wide['layers'])} layer(s) at 8 bits)" in card["provenance"]["compressed_from"]["method"]
    assert card["remake"] == f"slimvision compress gptq --run-dir {run} --calibration 8 --tune-steps 2 --wide-budget-kb 40"


def test_gptq_refuses_a_file_as_its_run_folder(tmp_path, capsys):
    pytest.importorskip("torch")
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    assert exit_code(["compress", "gptq", "--run-dir", taken]) != 0
    assert "is a file" in one_line_error(capsys)
    assert taken.read_text() == "not a folder"


@pytest.mark.parametrize("command", [["compress", "gptq", "--calibration", "1", "-q"],
                                     ["train", "style-transformer", "--steps", "1", "-q"]])
def test_a_run_folder_that_cannot_be_made_is_one_line_naming_it(tmp_path, capsys, command):
    pytest.importorskip("torch")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert exit_code([*command, "--run-dir", blocker / "run"]) == 2  # refused as an argument, before any work
    error = one_line_error(capsys)
    assert str(blocker) in error and "cannot be made" in error and "is a file" in error
    assert blocker.read_text() == "x"


def test_face_int8_writes_a_graph_the_face_pipeline_reads_and_its_card(tmp_path, capsys):
    pytest.importorskip("face_recognition_models", reason="needs the faces extra")
    pytest.importorskip("gan_face_generate", reason="the train extra installs gan-face-generate")
    import numpy as np

    from slimvision.cli.main import main
    from slimvision.export.card import read_card
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.faces import FaceRecognizer

    output = tmp_path / "dlib.int8.onnx"
    assert main(["compress", "face-int8", "-o", str(output), "--calibration", "4", "-q"]) == 0
    assert "MB" in capsys.readouterr().out
    card = read_card(tmp_path / "dlib.int8.card.json")
    assert card.files == {"graph": "dlib.int8.onnx"} and card.remake.startswith("slimvision compress face-int8")
    assert card.parity["mean_cosine"] > 0.99  # against the float graph, on other synthetic chips
    recognizer = FaceRecognizer(SessionSettings(threads=2), model=output)
    assert recognizer.embedder.name == "dlib-resnet"  # the same descriptors: galleries mix
    assert recognizer.network.run({"face_chip": np.zeros((1, 3, 150, 150), np.float32)})[0].shape == (1, 128)
    assert main(["compress", "face-int8", "-o", str(output), "--calibration", "4", "-q"]) != 0  # no silent overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["compress", "face-int8", "-o", str(tmp_path / "x.bin"), "-q"]) != 0
    assert ".onnx" in capsys.readouterr().err


def test_face_int8_quantizes_a_face_student_on_the_chips_its_card_asks_for(tmp_path, capsys):
    pytest.importorskip("gan_face_generate", reason="the train extra installs gan-face-generate")
    import numpy as np
    import torch

    from slimvision.cli.main import main
    from slimvision.export.card import read_card
    from slimvision.export.faces import export_face_student
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.faces import FaceRecognizer
    from slimvision.models.faces.config import MobileFaceNetConfig
    from slimvision.models.faces.mobilefacenet import MobileFaceNet
    from slimvision.models.weights import save_model

    torch.manual_seed(0)
    small = MobileFaceNetConfig(stem_channels=16, bottlenecks=((2, 16, 1, 2), (2, 32, 1, 2), (2, 32, 1, 2)),
                                feature_channels=64)
    run = tmp_path / "mfn-run"
    run.mkdir()
    student = MobileFaceNet(small).eval()
    save_model(student, run / "student")  # the card names the weights its graph came from
    export_face_student(student, run)  # reads 112 px ArcFace chips
    output = tmp_path / "student.int8.onnx"
    assert main(["compress", "face-int8", "--model", str(run), "-o", str(output), "--calibration", "4", "-q"]) == 0
    card = read_card(tmp_path / "student.int8.card.json")
    assert f"--model {run}" in card.remake and "face student" in card.provenance["graph"]
    assert card.parity["mean_cosine"] > 0.9
    recognizer = FaceRecognizer(SessionSettings(threads=2), model=output)
    assert recognizer.embedder.name == "mfn-run-embedder"  # the student's own gallery record, as its float graph
    assert recognizer.network.run({recognizer.card.input.name: np.zeros((1, 3, 112, 112), np.float32)})[0].shape \
        == (1, 128)
    capsys.readouterr()
    (run / "embedder.card.json").unlink()
    assert main(["compress", "face-int8", "--model", str(run), "-o", str(tmp_path / "again.onnx"), "-q"]) != 0
    assert "has no card beside it" in capsys.readouterr().err
    assert main(["compress", "face-int8", "--model", str(tmp_path / "nothing"), "-o", str(tmp_path / "b.onnx"),
                 "-q"]) != 0
    assert "is not a face student's run folder" in capsys.readouterr().err


def test_the_shipped_int8_face_embedder_agrees_with_the_float_one():
    pytest.importorskip("face_recognition_models", reason="needs the faces extra")
    import matplotlib
    import numpy as np
    from PIL import Image

    from slimvision.graph.session import SessionSettings
    from slimvision.registry import ARTIFACTS

    photo = np.asarray(Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB"))
    settings = SessionSettings(threads=2)
    exact = ARTIFACTS.create("face-embedder-dlib-resnet", settings=settings).main_face(photo).descriptor
    int8 = ARTIFACTS.create("face-embedder-dlib-resnet-int8", settings=settings).main_face(photo).descriptor
    assert np.linalg.norm(exact - int8) < 0.1  # the threshold is 0.6


def test_a_gptq_cards_remake_names_every_setting_off_its_default():
    from slimvision.errors import ConfigError
    from slimvision.training.style_predictor_gptq import PredictorGPTQConfig, remake_command

    assert remake_command(PredictorGPTQConfig(), "runs/p") == "slimvision compress gptq --run-dir runs/p"
    config = PredictorGPTQConfig(wide_budget_kb=280, grid="mse", act_order=False)
    assert remake_command(config, "runs/p") == ("slimvision compress gptq --run-dir runs/p --wide-budget-kb 280 "
                                                "--grid mse --no-act-order")
    with pytest.raises(ConfigError, match="grid"):
        PredictorGPTQConfig(grid="max").validate()
