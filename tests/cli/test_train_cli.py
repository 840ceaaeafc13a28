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
