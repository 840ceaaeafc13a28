"""``slimvision serve`` as users start it: a printed URL on loopback, one-line errors, no torch."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from slimvision.cli.main import main  # noqa: E402


def test_serve_prints_its_loopback_url_and_answers(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "slimvision.cli.main", "serve", "--gallery",
                                str(tmp_path / "g.sqlite")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        health = httpx.get(f"{match.group(0)}/api/health", timeout=30).json()
        assert health["status"] == "ok"
    finally:
        process.terminate()
        process.wait(20)


def test_a_taken_port_is_a_one_line_error(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: cannot listen on 127.0.0.1:{port}") and "\n" not in error


@pytest.mark.parametrize("option, value", [
    ("--workers", "0"), ("--workers", "-1"), ("--workers", "nan"), ("--workers", "1e9"),
    ("--port", "70000"), ("--port", "-1"), ("--queue", "-1"), ("--timeout", "0"), ("--timeout", "nan"),
    ("--timeout", "inf"), ("--max-upload-mb", "-5"), ("--max-pixels", "0"), ("--max-client-connections", "4"),
])
def test_bad_limits_are_refused_in_one_line(capsys, option, value):
    with pytest.raises(SystemExit) as refused:
        main(["serve", option, value])
    assert refused.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and option in error


# In a fresh interpreter: serving style transfer, GAN samples and numerals never imports torch.
SCRIPT = r"""
import io, json, sys
import numpy as np
from PIL import Image
from fastapi.testclient import TestClient
from slimvision.server.app import create_app

def png(image):
    buffer = io.BytesIO(); Image.fromarray(image).save(buffer, format="PNG"); return buffer.getvalue()

photo = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
with TestClient(create_app()) as client:
    codes = [client.post("/api/style/stylize", files=[("content", ("c.png", png(photo), "image/png")),
                                                       ("style", ("s.png", png(photo[::-1]), "image/png"))]).status_code,
             client.get("/api/gan/sample", params={"n": 2}).status_code,
             client.post("/api/numerals/read", files={"image": ("p.png", png(photo), "image/png")}).status_code]
print(json.dumps({"codes": codes, "torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch")}))
"""


def test_the_server_never_imports_torch(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "SLIMVISION_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"codes": [200, 200, 200], "torch": []}
