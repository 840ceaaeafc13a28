"""``slimvision train ...``: argument errors are one line and nothing is written."""

from __future__ import annotations

import pytest

from slimvision.cli.main import main

pytest.importorskip("torch")


def test_bad_transformer_settings_fail_in_one_line_before_any_work(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "style-transformer", "--run-dir", str(run_dir), "--edge-kernels", "3,4"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "edge_kernels must be two odd sizes" in err
    assert main(["train", "style-transformer", "--run-dir", str(run_dir), "--separable", "residual,head"]) != 0
    assert "separable parts must be among" in capsys.readouterr().err
    assert not run_dir.exists()


def test_margin_settings_the_loss_does_not_use_fail_in_one_line_before_any_work(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "face-student", "--run-dir", str(run_dir), "--margin", "0.3"]) != 0  # regression: no margin
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "loss='regression' does not use margin" in err
    assert main(["train", "face-student", "--run-dir", str(run_dir), "--loss", "margin-distillation",
                 "--margin", "0.1", "--min-margin", "0.2"]) != 0
    assert "min_margin must be in [0, margin=0.1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's own check
        main(["train", "face-student", "--run-dir", str(run_dir), "--loss", "arcface", "--scale", "0"])
    assert "--scale must be more than 0" in capsys.readouterr().err
    assert not run_dir.exists()


def _face_config(*words):
    from slimvision.cli.main import build_parser
    from slimvision.cli.train import face_student_config

    return face_student_config(build_parser().parse_args(["train", "face-student", *words]))


def test_face_student_flags_turn_each_part_of_the_recipe_off_and_on(tmp_path):
    run = ["--run-dir", str(tmp_path / "run")]
    plain = _face_config(*run).resolved()
    assert (plain.batch_norm, plain.target_space, plain.relational_weight, plain.hint_weight,
            plain.distance_scale) == (True, "centred", 1.0, 1.0, True)
    old = _face_config(*run, "--no-batch-norm", "--target-space", "raw", "--relational-weight", "0",
                       "--hint-weight", "0", "--no-distance-scale").resolved()
    assert (old.batch_norm, old.target_space, old.relational_weight, old.hint_weight,
            old.distance_scale) == (False, "raw", 0.0, 0.0, False)
    assert _face_config(*run, "--hint-weight", "auto", "--loss", "arcface").resolved().hint_weight == 0.0
    assert _face_config(*run, "--hint-weight", "0.5").hint_weight == 0.5
    assert _face_config(*run, "--batch-norm", "--distance-scale").batch_norm is True
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("words, message", [
    (["--hint-weight", "sometimes"], "--hint-weight must be auto or a number, got 'sometimes'"),
    (["--hint-weight", "-1"], "--hint-weight must be auto or at least 0, got '-1'"),
    (["--batch-norm", "--no-batch-norm"], "argument --no-batch-norm: not allowed with argument --batch-norm"),
    (["--distance-scale", "--no-distance-scale"], "not allowed with argument --distance-scale"),
])
def test_bad_face_student_switches_are_one_line_argparse_errors(tmp_path, capsys, words, message):
    with pytest.raises(SystemExit):
        main(["train", "face-student", "--run-dir", str(tmp_path / "run"), *words])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("words, message", [
    (["--loss", "arcface", "--hint-weight", "1"], "hint_weight needs init='pruned-teacher'"),
    (["--student", "mobilefacenet", "--init", "scratch", "--batch-norm"], "batch_norm is for the dlib student"),
    (["--student", "mobilefacenet", "--init", "scratch", "--distance-scale"], "distance_scale scales the dlib"),
])
def test_face_student_settings_that_do_not_fit_fail_in_one_line_before_any_work(tmp_path, capsys, words, message):
    run_dir = tmp_path / "run"
    assert main(["train", "face-student", "--run-dir", str(run_dir), *words]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not run_dir.exists()


def test_a_face_student_run_saved_under_the_old_defaults_resumes_with_them(tmp_path):
    """A folder whose checkpoint config lacks the recipe's keys (written before they existed) resumes
    with the values the old code used, and the flags given still apply."""
    import json

    from slimvision.training.checkpoint import FORMAT
    from slimvision.training.face_student import LEGACY_DEFAULTS, FaceStudentConfig

    saved = FaceStudentConfig(**LEGACY_DEFAULTS, faces=6, steps=4).to_dict()
    for key in LEGACY_DEFAULTS:
        del saved[key]
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000004"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer.json").write_text(json.dumps(
        {"format": FORMAT, "step": 4, "optimizers": {}, "extra": {"config": saved}, "history": {}}))
    config = _face_config("--run-dir", str(tmp_path / "run"), "--steps", "8")
    assert (config.faces, config.steps) == (6, 8)
    assert {key: getattr(config, key) for key in LEGACY_DEFAULTS} == LEGACY_DEFAULTS
    assert _face_config("--run-dir", str(tmp_path / "run"), "--distance-scale").distance_scale is True


def test_a_flag_that_does_not_fit_a_resumed_face_student_run_names_the_run_folder(tmp_path, capsys):
    import json

    from slimvision.training.checkpoint import FORMAT
    from slimvision.training.face_student import FaceStudentConfig

    saved = FaceStudentConfig(faces=6, steps=4).resolved().to_dict()  # a run of today's defaults: hints on
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000004"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer.json").write_text(json.dumps(
        {"format": FORMAT, "step": 4, "optimizers": {}, "extra": {"config": saved}, "history": {}}))
    assert main(["train", "face-student", "--run-dir", str(tmp_path / "run"), "--loss", "arcface"]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "resumes with the settings it was trained with" in err and "hint_weight" in err
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == ["checkpoints"]


@pytest.mark.parametrize("command", [["train", "face-student"], ["train", "style-predictor"], ["compress", "gptq"]])
@pytest.mark.parametrize("run_dir, message", [("photo.png", "photo.png: is a file"),
                                              ("photo.png/run", "cannot be made: {tmp}/photo.png is a file")])
def test_a_run_folder_that_is_a_file_is_a_one_line_argument_error(tmp_path, capsys, command, run_dir, message):
    """It was 'error: photo.png: file exists' (exit 1) once the run had started."""
    (tmp_path / "photo.png").write_bytes(b"a photo")
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--run-dir", str(tmp_path / run_dir)])
    assert exit_.value.code == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err.strip().splitlines()[-1]
    assert (tmp_path / "photo.png").read_bytes() == b"a photo"
