"""slimvision batch on Ray Data: a local Ray with 2 workers runs the same jobs as the local pool
(same bytes out, a bad file a row), and a Ray batch killed mid-way (SIGKILL) is finished by the
rerun with every image done exactly once and no partial files.

Skipped, saying so, where Ray (the scale extra) is not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'slimvision[scale]'): "
                                        "the Ray batch tests are skipped")

from slimvision.inference.batch_jobs import DONE, FAILED, MANIFEST_NAME, run_batch  # noqa: E402
from slimvision.inference.batch_ray import ray_engine  # noqa: E402
from slimvision.inference.batch_tasks import TaskSpec  # noqa: E402
from slimvision.io.images import load_image  # noqa: E402
from tests.conftest import save_png  # noqa: E402

STYLES = Path(__file__).resolve().parents[2] / "src" / "slimvision" / "samples" / "styles"


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the module (starting one costs about 3 s)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray waits 30 s for its GCS server to write its port file. A fresh venv's first start on a
    # busy 2-core machine (the whole suite in a new clone) once took longer: wait up to 120 s.
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def images(folder: Path, count: int, size: int, grey: bool = False) -> list[Path]:
    rng = np.random.default_rng(1)
    shape = (size, size) if grey else (size, size, 3)
    return [save_png(rng.integers(0, 255, shape, dtype=np.uint8), folder / f"img{i:02d}.png") for i in range(count)]


def rows(dest: Path) -> list[dict]:
    """The manifest's rows (its first line names the job)."""
    return [json.loads(line) for line in (dest / MANIFEST_NAME).read_text().splitlines()[1:]]


def test_ray_writes_what_the_local_pool_writes_and_a_bad_file_is_a_row(tmp_path, local_ray):
    images(tmp_path / "in", 4, 48, grey=True)
    (tmp_path / "in" / "zz-broken.png").write_bytes(b"\x89PNG but cut")
    spec = TaskSpec("vae-denoise")
    on_ray = run_batch(spec, tmp_path / "in", tmp_path / "ray", workers=2, engine=ray_engine(batch_size=2),
                       engine_name="ray")
    local = run_batch(spec, tmp_path / "in", tmp_path / "local", workers=2)
    assert (on_ray.done, len(on_ray.failed)) == (local.done, len(local.failed)) == (4, 1)
    for index in range(4):
        name = f"img{index:02d}.png"
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    failed = [row for row in rows(tmp_path / "ray") if row["status"] == FAILED]
    assert len(failed) == 1 and failed[0]["error"].startswith(str(tmp_path / "in" / "zz-broken.png"))
    again = run_batch(spec, tmp_path / "in", tmp_path / "ray", workers=2, engine=ray_engine(), engine_name="ray")
    assert (again.done, again.skipped, len(again.failed)) == (0, 4, 1)  # resumed: only the bad file retried


def _wait_for_session_to_end(session: int, timeout: float = 20.0) -> None:
    """Ray's processes of the killed run (its session) exit once their raylet is gone; any still
    there after ``timeout`` are killed by id."""
    deadline = time.monotonic() + timeout
    while True:
        left = [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and _session_of(int(entry)) == session]
        if not left:
            return
        if time.monotonic() > deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.2)


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills a process session via /proc")
def test_a_killed_ray_batch_is_finished_by_the_rerun_exactly_once(tmp_path, local_ray):
    sources = images(tmp_path / "in", 24, 320)
    dest = tmp_path / "out"
    command = [sys.executable, "-m", "slimvision.cli.main", "batch", "style", str(tmp_path / "in"), "-o", str(dest),
               "--style", str(STYLES / "starry_night.jpg"), "--ray", "--workers", "2", "--batch-size", "1", "-q"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    manifest = dest / MANIFEST_NAME
    try:
        while process.poll() is None and not (manifest.exists() and manifest.read_text().count("\n") >= 2):  # the job line and a row
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        _wait_for_session_to_end(process.pid)
    recorded = max(manifest.read_text().count("\n") - 1, 0) if manifest.exists() else 0  # rows after the job line
    if process.returncode != -signal.SIGKILL or recorded >= len(sources):
        pytest.skip(f"the batch ended (exit {process.returncode}, {recorded} rows) before it could be killed")
    summary = run_batch(TaskSpec("style", {"vector": _vector()}), tmp_path / "in", dest, workers=2,
                        engine=ray_engine(), engine_name="ray")
    assert summary.skipped == recorded and summary.done == len(sources) - recorded and not summary.failed
    final = rows(dest)
    assert sorted(row["input"] for row in final) == sorted(map(str, sources))  # each input once
    assert {row["status"] for row in final} == {DONE}
    assert not [path.name for path in dest.iterdir() if path.name.startswith(".")]  # no partial files
    for row in final:
        assert load_image(row["output"]).shape == (320, 320, 3)


def _vector() -> list[float]:
    """The style vector of the killed run (starry_night with the default model), as the CLI computes it."""
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.style import artifact_for
    from slimvision.registry import ARTIFACTS

    pipe = ARTIFACTS.create(artifact_for(), settings=SessionSettings())
    return [float(value) for value in pipe.target_vector([STYLES / "starry_night.jpg"]).values]
