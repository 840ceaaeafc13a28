"""The inference path and the CLI never import torch; with a warm cache they skip onnx too."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import make_content, make_style, save_png

# Runs in a fresh interpreter. A meta-path spy records every attempt to import torch or onnx, so
# the check means something whether or not torch is installed.
SCRIPT = r"""
import json, sys

class Spy:
    attempts = []
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "onnx"):
            Spy.attempts.append(name)
        return None

sys.meta_path.insert(0, Spy())
import slimvision.cli.main as cli

content, style, out, vector = sys.argv[1:5]
codes = [cli.main(["style", "stylize", content, "-s", style, "-o", out, "--threads", "2", "--overwrite"]),
         cli.main(["style", "vector", style, "-o", vector, "--threads", "2", "--overwrite"])]
print(json.dumps({
    "codes": codes,
    "attempted": sorted(set(Spy.attempts)),
    "torch_loaded": sorted(m for m in sys.modules if m.split(".")[0] == "torch"),
    "onnx_loaded": sorted(m for m in sys.modules if m.split(".")[0] == "onnx"),
}))
"""


def _run(tmp_path, cache) -> dict:
    env = {**os.environ, "SLIMVISION_CACHE_DIR": str(cache)}
    args = [str(tmp_path / "content.png"), str(tmp_path / "style.png"), str(tmp_path / "out.png"),
            str(tmp_path / "style.npy")]
    result = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_cli_never_imports_torch_and_a_warm_cache_skips_onnx(tmp_path):
    save_png(make_content(48, 64), tmp_path / "content.png")
    save_png(make_style(60, 80), tmp_path / "style.png")
    cache = tmp_path / "cache"

    cold = _run(tmp_path, cache)
    assert cold["codes"] == [0, 0]
    assert cold["torch_loaded"] == [] and not any(name.startswith("torch") for name in cold["attempted"])
    # The first run rewrites the transform graph, which needs onnx (so the spy does see imports).
    assert "onnx" in cold["onnx_loaded"]
    assert any(p.name.endswith(".onnx") for p in cache.iterdir())

    warm = _run(tmp_path, cache)
    assert warm["codes"] == [0, 0]
    assert warm["torch_loaded"] == [] and warm["attempted"] == []
    assert warm["onnx_loaded"] == []
    assert (tmp_path / "out.png").is_file() and (tmp_path / "style.npy").is_file()
