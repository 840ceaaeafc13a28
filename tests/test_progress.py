"""Hidden progress bars are free; shown ones are tqdm on stderr."""

from __future__ import annotations

import subprocess
import sys

from slimvision.progress import NoProgress, progress_bar


def test_hidden_bar_offers_the_same_calls():
    with progress_bar(5, enabled=False, unit="img") as bar:
        assert isinstance(bar, NoProgress)
        bar.update()
        bar.n = 3
        bar.refresh()
        bar.set_postfix({"loss": "0.1"})


def test_shown_bar_is_tqdm_on_stderr(capsys):
    with progress_bar(2, unit="img", desc="testing") as bar:
        bar.update(2)
    captured = capsys.readouterr()
    assert "testing" in captured.err and captured.out == ""


def test_a_hidden_bar_does_not_import_tqdm():
    code = "import sys; from slimvision.progress import progress_bar; progress_bar(1, enabled=False); print('tqdm' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
