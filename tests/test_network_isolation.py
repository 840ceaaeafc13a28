"""Nothing leaves the machine: ``slimvision serve`` (a stylization through its API) and a
``style stylize`` run try to reach no address but loopback, and write no telemetry files.

ONNX Runtime 1.32's Linux wheel resolves its telemetry collector's host soon after a process's
first session, and again every few seconds, and writes a device id under
``~/.cache/Microsoft/DeveloperTools/.onnxruntime``; ``slimvision/__init__.py`` turns that off.
Two tests watch for it:

* under strace, in a network namespace of its own (``unshare -n``, loopback only), every
  ``connect``/``sendto``/``sendmsg`` of every process: this sees native code (ONNX Runtime's C++
  uploader) as well as Python. It needs Linux, root (or user namespaces), ``unshare``, ``ip``
  and ``strace`` (Debian: ``apt-get install strace``), and skips saying which is missing;
* everywhere, Python audit hooks in every process (socket connects, sends and name lookups, in
  Python code only) and the files the run leaves under a fresh ``$HOME`` (ONNX Runtime's
  telemetry writes its device id there as soon as it starts, whatever the network).

Both clear the variables that would turn the telemetry off on their own (CI markers, ONNX
Runtime's switches), so they show that slimvision turns it off, not the test machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

#: Variables that make ONNX Runtime skip its telemetry by themselves (its CI detection and its own
#: switches): removed from the test's environment.
TELEMETRY_SWITCHES = ("CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL",
                      "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER",
                      "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI", "ORT_RUNNING_UNIT_TESTS", "ORT_DISABLE_TELEMETRY",
                      "ORT_TELEMETRY_DISABLED")
#: Seconds the server stays up after its first stylization: ONNX Runtime's uploader tried to
#: resolve its host right after the first session and again about 5 s and 14 s later.
LINGER_S = 8

# The work, in a fresh interpreter: a server in a child process, a health check and a
# stylization through its API, a CLI style run, then the server kept alive a while.
WORK = r"""
import io, os, re, subprocess, sys, time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

folder = Path(sys.argv[1])
linger = float(sys.argv[2])
rng = np.random.default_rng(0)
for name in ("content.png", "style.png"):
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / name)
cli = [sys.executable, "-m", "slimvision.cli.main"]
server = subprocess.Popen(cli + ["serve", "--gallery", str(folder / "g.sqlite")], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
try:
    for line in server.stdout:  # warnings (no onnxruntime-web, say) may come first
        if found := re.search(r"http://127\.0\.0\.1:\d+", line):
            break
    url = found.group(0)
    with httpx.Client(base_url=url, timeout=120) as client:
        assert client.get("/api/health").json()["status"] == "ok"
        files = [("content", ("c.png", (folder / "content.png").read_bytes(), "image/png")),
                 ("style", ("s.png", (folder / "style.png").read_bytes(), "image/png"))]
        assert client.post("/api/style/stylize", files=files).status_code == 200
    subprocess.run(cli + ["style", "stylize", str(folder / "content.png"), "--style", str(folder / "style.png"),
                          "-o", str(folder / "out.png")], check=True, capture_output=True, timeout=300)
    time.sleep(linger)
finally:
    server.terminate()
    server.wait(30)
print("work done")
"""

# Installed in every Python process of the run (as sitecustomize): records, as JSON lines, each
# socket connect/send to an address that is not loopback and each name lookup of a host that is
# not a loopback literal or "localhost".
AUDIT_HOOK = r"""
import ipaddress, json, os, sys

_LOG = os.environ["SLIMVISION_NET_AUDIT_LOG"]

def _loopback(host):
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False

def _hook(event, args):
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        address = args[1] if len(args) > 1 else None
        if isinstance(address, tuple) and address and not _loopback(address[0]):
            _record(event, address[0])
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"):
        if not _loopback(args[0] if isinstance(args[0], str) else (args[0] or b"").decode()):
            _record(event, args[0])

def _record(event, target):
    with open(_LOG, "a") as handle:
        handle.write(json.dumps({"pid": os.getpid(), "event": event, "target": str(target)}) + "\n")

sys.addaudithook(_hook)
"""


def _environment(tmp_path: Path) -> dict[str, str]:
    """The run's environment: a fresh home, no cache overrides, no telemetry switches."""
    home = tmp_path / "home"
    home.mkdir()
    env = {name: value for name, value in os.environ.items()
           if name not in TELEMETRY_SWITCHES and name not in ("XDG_CACHE_HOME", "SLIMVISION_CACHE_DIR")}
    return {**env, "HOME": str(home), "PYTHONUNBUFFERED": "1"}


def _files_outside_our_cache(home: Path) -> list[str]:
    """Files the run left under $HOME other than slimvision's own cache (~/.cache/slimvision)."""
    ours = home / ".cache" / "slimvision"
    return sorted(str(path.relative_to(home)) for path in home.rglob("*")
                  if path.is_file() and not path.is_relative_to(ours))


def _run_work(command_prefix: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    work = tmp_path / "work"
    work.mkdir()
    return subprocess.run([*command_prefix, sys.executable, "-c", WORK, str(work), str(LINGER_S)],
                          capture_output=True, text=True, timeout=600, env=env)


def test_no_process_sends_anything_off_loopback_or_writes_telemetry_files(tmp_path):
    """Fallback without strace or namespaces: Python audit hooks in every process, and $HOME."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT_HOOK)
    log = tmp_path / "audit.jsonl"
    log.touch()
    env = _environment(tmp_path)
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(hooks), env.get("PYTHONPATH")])),
               SLIMVISION_NET_AUDIT_LOG=str(log))
    result = _run_work([], tmp_path, env)
    assert result.returncode == 0 and "work done" in result.stdout, result.stdout + result.stderr
    attempts = [json.loads(line) for line in log.read_text().splitlines()]
    assert attempts == [], f"network attempts off loopback: {attempts}"
    assert _files_outside_our_cache(tmp_path / "home") == []


def _strace_prefix(trace_log: Path) -> list[str]:
    """``unshare -n`` + loopback up + ``strace -f``, or a skip that says what is missing."""
    if not sys.platform.startswith("linux"):
        pytest.skip("network namespaces are Linux only")
    missing = [tool for tool in ("unshare", "strace", "ip") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian: apt-get install strace iproute2 util-linux)")
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here (unshare -n needs root or user namespaces): "
                    f"{probe.stderr.strip()}")
    strace = f"strace -f -qq -e trace=connect,sendto,sendmsg,sendmmsg -o {trace_log}"
    return ["unshare", "-n", "sh", "-c", f'ip link set lo up && exec {strace} "$@"', "slimvision-isolated"]


#: A syscall in strace's log that reaches an IPv4/IPv6 address, and the address it names.
_INET_CALL = re.compile(r"(connect|sendto|sendmsg|sendmmsg)\(.*sa_family=AF_INET6?,.*?"
                        r"(?:inet_addr\(\"([^\"]+)\"\)|inet_pton\(AF_INET6, \"([^\"]+)\")")


def _off_loopback(trace: str) -> list[str]:
    """strace lines that try to reach a non-loopback address, or look a name up through nscd."""
    import ipaddress

    found = []
    for line in trace.splitlines():
        match = _INET_CALL.search(line)
        if match and not ipaddress.ip_address(match[2] or match[3]).is_loopback:
            found.append(line)
        elif "nscd/socket" in line:
            found.append(line)  # glibc asks nscd first when it resolves a host name
    return found


def test_serve_and_a_style_run_reach_nothing_but_loopback_in_a_network_namespace(tmp_path):
    trace_log = tmp_path / "strace.log"
    prefix = _strace_prefix(trace_log)
    result = _run_work(prefix, tmp_path, _environment(tmp_path))
    assert result.returncode == 0 and "work done" in result.stdout, result.stdout + result.stderr
    trace = trace_log.read_text()
    assert "connect(" in trace  # strace saw the loopback traffic, so it would see the rest
    attempts = _off_loopback(trace)
    assert attempts == [], "tried to reach the network:\n" + "\n".join(attempts[:20])
    assert _files_outside_our_cache(tmp_path / "home") == []
