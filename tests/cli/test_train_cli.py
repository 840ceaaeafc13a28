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
