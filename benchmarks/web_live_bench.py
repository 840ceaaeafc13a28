#!/usr/bin/env python
"""The web page's live camera mode: frames/s the browser paints, per painting size.

Starts ``slimvision serve`` in process on a free loopback port and drives Debian's Chromium
headless through Playwright with the end-to-end tests' flags plus Chromium's **fake camera**
(``--use-fake-device-for-media-stream=fps=N`` and ``--use-fake-ui-for-media-stream``): a
generated 1280x720 test pattern, not a real camera, so the figures are the browser's painting
rate (onnxruntime-web WASM, the page's default threads), not any camera's. The fake camera runs
at ``--camera-fps`` (default 60) so that it does not cap the rate at the sizes that paint faster.

For each painting size, with "sharp edges" on (the page's default: shown at twice the painting
size, the residual upsampled along the camera's edges by guided.js) and off (the small painting
zoomed by the browser), the page's own figure is read (the median interval over the last 30
painted frames, as the page shows it), after ``--warmup`` frames at that size, and the painted
frames are counted over ``--seconds`` as a check on the median. The settings are visited
``--rounds`` times in turn (the machine's other load comes and goes) and each figure is the
median over the rounds.

    python benchmarks/web_live_bench.py                  # about 6 minutes on 2 cores
    python benchmarks/web_live_bench.py --sizes 320 --sharp on --rounds 1 --seconds 20

Writes benchmarks/results/web_live.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "web_live.json"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="160,240,320,480,640", help="painting sizes, longer side in px")
    parser.add_argument("--seconds", type=float, default=8.0, help="counting time per size (default 8)")
    parser.add_argument("--warmup", type=int, default=30, help="frames painted at a size before measuring (default 30)")
    parser.add_argument("--sharp", default="on,off", help="sharp edges on, off or both (default on,off)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the settings (default 2)")
    parser.add_argument("--camera-fps", type=int, default=60, help="the fake camera's frame rate (default 60)")
    parser.add_argument("--model", default=None, help="a model the page offers (default: the page's default, fast)")
    parser.add_argument("--chromium", default=os.environ.get("SLIMVISION_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def frames(page) -> int:
    return int(page.eval_on_selector("#live", "s => Number(s.dataset.frames || 0)"))


def wait_frames(page, at_least: int) -> None:
    page.wait_for_function(f"""() => {{
        const s = document.querySelector('#live');
        if (s.dataset.state === 'error') throw new Error(document.querySelector('#live-error').textContent);
        return Number(s.dataset.frames || 0) >= {at_least};
    }}""", timeout=300_000)


def measure(page, size: int, sharp: bool, args: argparse.Namespace) -> dict:
    """Switch the running camera to `size` and `sharp`, warm up, then read the page's rate and count frames."""
    page.select_option("#live-size", str(size))
    page.set_checked("#live-sharp", sharp)
    wait_frames(page, frames(page) + args.warmup)
    start_frames, started = frames(page), time.perf_counter()
    time.sleep(args.seconds)
    counted = (frames(page) - start_frames) / (time.perf_counter() - started)
    return {"size": size, "sharp": sharp, "page_fps": float(page.eval_on_selector("#live", "s => s.dataset.fps")),
            "counted_fps": round(counted, 2), "rate_line": page.inner_text("#live-rate"),
            "detail": page.inner_text("#live-detail"), "load_average": round(os.getloadavg()[0], 2)}


def run(args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    from slimvision.server.app import serve_in_thread
    from slimvision.server.settings import ServerSettings

    url, stop = serve_in_thread(ServerSettings())
    camera = [f"--use-fake-device-for-media-stream=fps={args.camera_fps}", "--use-fake-ui-for-media-stream"]
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=FLAGS + camera)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.wait_for_selector('#style-form[data-state="ready"]', state="attached", timeout=120_000)
            if args.model:
                page.select_option("#model", args.model)
            page.click("#live-start")
            settings = [(int(size), sharp == "on") for sharp in args.sharp.split(",") for size in args.sizes.split(",")]
            runs = [measure(page, size, sharp, args) for _ in range(args.rounds) for size, sharp in settings]
            page.click("#live-stop")
            version = browser.version
            browser.close()
    finally:
        stop()
    return {"rows": summarise(runs), "runs": runs, "chromium": version}


def summarise(runs: list[dict]) -> list[dict]:
    """Per setting, the median over the rounds of the page's figure and of the counted rate."""
    settings = sorted({(run["sharp"], run["size"]) for run in runs}, key=lambda item: (not item[0], item[1]))
    rows = []
    for sharp, size in settings:
        mine = [run for run in runs if (run["sharp"], run["size"]) == (sharp, size)]
        middle = {key: round(statistics.median(run[key] for run in mine), 2) for key in ("page_fps", "counted_fps")}
        rows.append({"size": size, "sharp": sharp, **middle,
                     "page_fps_rounds": [run["page_fps"] for run in mine],
                     "counted_fps_rounds": [run["counted_fps"] for run in mine], "detail": mine[-1]["detail"]})
    return rows


def machine() -> dict:
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lock = json.loads((ROOT / "web" / "package-lock.json").read_text())
    ort_web = lock["packages"].get("node_modules/onnxruntime-web", {}).get("version")
    return {"cpus_usable": len(os.sched_getaffinity(0)), "platform": platform.platform(),
            "onnxruntime_web": ort_web, "slimvision_git": git}


def main() -> None:
    args = parse_args()
    started = time.time()
    result = run(args)
    loads = [run_["load_average"] for run_ in result["runs"]]
    report = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": "python benchmarks/web_live_bench.py",
              "arguments": {k: str(v) for k, v in vars(args).items()}, "seconds": round(time.time() - started, 1),
              "camera": f"Chromium's fake camera (a generated test pattern), {args.camera_fps} frames/s asked",
              "machine": {**machine(), "chromium": result["chromium"]}, "rows": result["rows"], "runs": result["runs"],
              "load_average": {"min": min(loads), "max": max(loads)}}
    from slimvision.io.atomic import write_text_atomic

    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output, json.dumps(report, indent=1) + "\n", overwrite=True)
    print("| painting size | sharp edges | frames/s (page's median) | frames/s (counted) | rounds (counted) |")
    print("|---|---|---|---|---|")
    for row in result["rows"]:
        rounds = ", ".join(f"{value:.1f}" for value in row["counted_fps_rounds"])
        sharp = "on" if row["sharp"] else "off"
        print(f"| {row['size']} px | {sharp} | {row['page_fps']:.1f} | {row['counted_fps']:.1f} | {rounds} |")
    print(f"load average {min(loads)}-{max(loads)} on {len(os.sched_getaffinity(0))} usable CPUs")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
