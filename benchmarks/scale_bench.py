"""Past one machine (issue 27): Ray Data vs the local worker pool, a killed Ray batch, gallery stores.

    python benchmarks/scale_bench.py                               # everything (about 15-25 minutes on 2 cores)
    python benchmarks/scale_bench.py --gallery-size 100000 --skip-batch   # the gallery table only

- **Batch**: ``--images`` photos (crops of the bundled photos, each size of ``--sizes``) stylized with the
  teacher by :func:`slimvision.inference.batch_jobs.run_batch`, on the local worker pool and on
  Ray Data (a local Ray started once, 2 CPUs), with 1 and 2 workers, alternated in one run
  (local 1, Ray 1, local 2, Ray 2, then the reverse order, ``--rounds`` times). Each run starts
  from an empty destination and includes building the sessions (Ray: the actors too), since a
  real job pays for them. Medians of images/s; Ray / local at each worker count, 2 / 1 workers
  for each engine. Targets: Ray >= 0.85x local, 2 workers >= 1.6x 1.
- **Kill**: the CLI (``slimvision batch style ... --ray``) is SIGKILLed after a few manifest
  rows, then rerun; the manifest must list every image exactly once, all done, with no temp
  file left and every output a whole image.
- **Gallery**: ``--gallery-size`` synthetic 128-d descriptors (4 per made-up person: a unit
  centre plus noise as a new photo would give, same-person distances about 0.35, other people
  about 1.4), enrolled through each store's ``add_people`` in chunks of ``--chunk`` (enrolment
  rate), then ``--queries`` new photos of enrolled people searched top-1 (median ms per
  query after a warm-up, recall@1 against exact search): SQLite + numpy (exact), SQLite + FAISS
  (exact flat index) and milvus-lite (``--milvus-index``, IVF_FLAT unless given, as the store's default; its own
  search) on the first ``--milvus-size`` descriptors (100,000 by default; 1,000,000 took 8
  minutes to enrol with IVF_FLAT and 21 with HNSW on 2 busy cores; queried with the photos of
  the people it holds). The
  enrolment rate over the last tenth of each gallery shows whether it slows as the gallery grows.
  "Reopened" is a second store on the same milvus-lite database in the same process (milvus-lite
  keeps its engine per process, so this is not a cold start).

    OMP_NUM_THREADS=1 python benchmarks/scale_bench.py --skip-batch --skip-kill --gallery-size 1000000 \
        --milvus-size 1000000 --queries 100 -o benchmarks/results/scale_bench_1m.json

``--milvus-uri milvus://HOST:PORT`` measures a Milvus server instead of milvus-lite (HNSW unless
``--milvus-index``): a new collection, queried just after enrolment, again once flushed and
indexed, and from a second client; dropped at the end.

Writes benchmarks/results/scale_bench.json (atomically) and prints a table. The machine is
shared with other jobs (the load average is recorded): only same-run ratios are robust.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "scale_bench.json"
STYLE = REPO / "src" / "slimvision" / "samples" / "styles" / "starry_night.jpg"
PHOTOS = REPO / "src" / "slimvision" / "samples" / "content"


def load() -> float:
    return round(os.getloadavg()[0], 2)


# --------------------------------------------------------------------------- batch
def make_images(folder: Path, count: int, size: int, seed: int = 0) -> list[Path]:
    """``count`` crops of the bundled photos, ``size`` px square, as PNG."""
    from PIL import Image

    from slimvision.io.images import find_images, load_image

    rng = np.random.default_rng(seed)
    photos = [load_image(path) for path in find_images(PHOTOS)]
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(count):
        photo = photos[index % len(photos)]
        side = int(min(photo.shape[:2]) * rng.uniform(0.4, 0.9))
        top, left = (int(rng.integers(0, photo.shape[axis] - side + 1)) for axis in (0, 1))
        crop = Image.fromarray(photo[top:top + side, left:left + side]).resize((size, size), Image.BILINEAR)
        files.append(folder / f"photo{index:04d}.png")
        crop.save(files[-1])
    return files


def style_spec() -> Any:
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.batch_tasks import TaskSpec
    from slimvision.registry import ARTIFACTS

    artifact = "magenta-arbitrary-v1-fp32"
    vector = ARTIFACTS.create(artifact, settings=SessionSettings()).target_vector([STYLE]).values
    return TaskSpec("style", {"vector": [float(v) for v in vector], "artifact": artifact})


def bench_batch(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The four runs alternated, at each size of ``--sizes``: a fixed cost (Ray's actors and
    their sessions) weighs less as the images grow."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    ray_start = time.perf_counter() - started
    try:
        spec = style_spec()
        return {"images": args.images, "ray_start_s": round(ray_start, 2),
                "sizes": {str(size): batch_at(args, work, spec, size) for size in args.sizes}}
    finally:
        ray.shutdown()


def batch_at(args: argparse.Namespace, work: Path, spec: Any, size: int) -> dict[str, Any]:
    from slimvision.inference.batch_jobs import run_batch
    from slimvision.inference.batch_ray import ray_engine

    photos = work / f"photos-{size}"
    make_images(photos, args.images, size)
    print(f" {args.images} images of {size}x{size}:", flush=True)
    runs: list[dict[str, Any]] = []
    order = [("local", 1), ("ray", 1), ("ray-empty", 1), ("local", 2), ("ray", 2), ("ray-empty", 2)]
    for round_ in range(args.rounds):
        for engine, workers in (order if round_ % 2 == 0 else order[::-1]):
            if engine == "ray-empty":
                seconds = ray_floor_seconds(args.images, workers)
                runs.append({"engine": engine, "workers": workers, "round": round_, "seconds": round(seconds, 2),
                             "load": load()})
                print(f"  ray x{workers} with empty actors (the engine's own floor): {seconds:.2f} s", flush=True)
                continue
            dest = work / f"out-{engine}-{workers}-{round_}"
            summary = run_batch(spec, photos, dest, workers=workers,
                                engine=ray_engine() if engine == "ray" else None, engine_name=engine)
            rate = summary.done / summary.seconds
            runs.append({"engine": engine, "workers": workers, "round": round_, "seconds": round(summary.seconds, 2),
                         "images_per_s": round(rate, 3), "failed": len(summary.failed), "load": load()})
            print(f"  {engine:5s} x{workers}: {summary.done} images in {summary.seconds:.1f} s = {rate:.2f}/s "
                  f"(load {load()})", flush=True)
            shutil.rmtree(dest)
    shutil.rmtree(photos)
    return {"runs": runs, **batch_ratios(runs)}


def ray_floor_seconds(count: int, workers: int) -> float:
    """Seconds Ray Data takes to stream ``count`` rows through ``workers`` actors that do nothing:
    what the engine costs a job before any model runs (its executor, the actors' processes and
    their imports), with the same blocks, batch size and pool as ``batch_ray`` uses."""
    import ray.data

    from slimvision.inference.batch_ray import DEFAULT_BATCH_SIZE

    class Empty:  # defined here so Ray pickles it by value (this file is not importable on a worker)
        def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return batch

    ray.data.DataContext.get_current().enable_progress_bars = False
    started = time.perf_counter()
    dataset = ray.data.from_items([{"source": str(index)} for index in range(count)],
                                  override_num_blocks=max(1, -(-count // DEFAULT_BATCH_SIZE)))
    rows = dataset.map_batches(Empty, batch_size=DEFAULT_BATCH_SIZE, batch_format="numpy", num_cpus=1,
                               compute=ray.data.ActorPoolStrategy(size=workers))
    done = sum(1 for _ in rows.iter_rows())
    assert done == count, (done, count)
    return time.perf_counter() - started


def batch_ratios(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def median_of(engine: str, workers: int, key: str) -> float:
        return statistics.median(run[key] for run in runs if (run["engine"], run["workers"]) == (engine, workers))

    median = {(engine, workers): median_of(engine, workers, "images_per_s")
              for engine in ("local", "ray") for workers in (1, 2)}
    ratios: dict[str, Any] = {
        "median_images_per_s": {f"{engine}_x{workers}": round(rate, 3) for (engine, workers), rate in median.items()},
        "ray_over_local": {f"x{w}": round(median[("ray", w)] / median[("local", w)], 3) for w in (1, 2)},
        "two_over_one_worker": {e: round(median[(e, 2)] / median[(e, 1)], 3) for e in ("local", "ray")}}
    if any(run["engine"] == "ray-empty" for run in runs):
        # What part of a Ray job the engine itself takes before and around any model run.
        floor = {w: median_of("ray-empty", w, "seconds") for w in (1, 2)}
        ratios["ray_floor_s"] = {f"x{w}": round(floor[w], 2) for w in (1, 2)}
        ratios["ray_floor_share"] = {f"x{w}": round(floor[w] / median_of("ray", w, "seconds"), 3) for w in (1, 2)}
    return ratios


# --------------------------------------------------------------------------- kill
def bench_kill(work: Path, count: int, size: int) -> dict[str, Any]:
    """SIGKILL a Ray batch after a few rows, rerun it, check the manifest and the outputs."""
    from slimvision.io.images import load_image

    sources = make_images(work / "kill-in", count, size, seed=1)
    dest = work / "kill-out"
    command = [sys.executable, "-m", "slimvision.cli.main", "batch", "style", str(work / "kill-in"), "-o", str(dest),
               "--style", str(STYLE), "--ray", "--workers", "2", "--batch-size", "1", "-q"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = dest / "manifest.jsonl"
    while process.poll() is None and not (manifest.exists() and manifest.read_text().count("\n") >= 1):
        time.sleep(0.02)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    wait_for_session(process.pid)
    rows_at_kill = manifest.read_text().count("\n") if manifest.exists() else 0
    written_at_kill = len([p for p in dest.glob("*.png")])
    rerun = subprocess.run(command, capture_output=True, text=True)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    inputs = [row["input"] for row in rows]
    whole = all(load_image(row["output"]).shape[:2] == (size, size) for row in rows)
    temps = [path.name for path in dest.iterdir() if path.name.startswith(".")]
    ok = (sorted(inputs) == sorted(map(str, sources)) and {row["status"] for row in rows} == {"done"}
          and not temps and whole and rerun.returncode == 0)
    return {"images": count, "killed_with_signal": process.returncode == -signal.SIGKILL,
            "manifest_rows_at_kill": rows_at_kill, "outputs_at_kill": written_at_kill,
            "rerun_exit": rerun.returncode, "rerun_summary": rerun.stdout.strip().splitlines()[-1:],
            "rows_after": len(rows), "unique_inputs": len(set(inputs)), "temp_files_left": temps,
            "every_image_done_exactly_once": ok}


def wait_for_session(session: int, timeout: float = 30.0) -> None:
    """Ray's processes of a killed driver leave once their raylet is gone; stragglers killed by id."""
    deadline = time.monotonic() + timeout
    while True:
        left = [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and sid(int(entry)) == session]
        if not left:
            return
        if time.monotonic() > deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return
        time.sleep(0.2)


def sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


# --------------------------------------------------------------------------- gallery
def descriptors(size: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(size, 128) enrolled descriptors (4 per person), (queries, 128) new photos, their people."""
    rng = np.random.default_rng(seed)
    people = size // 4
    centres = rng.normal(size=(people, 128)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = 0.35 / np.sqrt(2 * 128)  # same-person distance about 0.35
    enrolled = np.repeat(centres, 4, axis=0) + rng.normal(scale=noise, size=(people * 4, 128)).astype(np.float32)
    who = rng.choice(people, queries, replace=False)
    asked = centres[who] + rng.normal(scale=noise, size=(queries, 128)).astype(np.float32)
    return enrolled.astype(np.float32), asked.astype(np.float32), who


def enrol(store: Any, enrolled: np.ndarray, chunk: int, timings: dict[str, Any] | None = None) -> float:
    """Descriptors per second through the store's ``add_people``; ``timings`` gets the rate over the
    last tenth of the gallery (does enrolment slow as it grows?) and the load average seen."""
    from slimvision.inference.face_gallery import Enrolment

    started = time.perf_counter()
    tail_from, tail_started, loads = int(len(enrolled) * 0.9) // chunk * chunk, None, []
    for start in range(0, len(enrolled), chunk):
        if start == tail_from:
            tail_started = time.perf_counter()
        first = start // 4
        store.add_people({f"p{first + i}": Enrolment(enrolled[start + 4 * i:start + 4 * i + 4])
                          for i in range(min(chunk, len(enrolled) - start) // 4)})
        loads.append(load())
        if timings is not None and start // chunk % 5 == 4:
            print(f"    {start + chunk} enrolled, {(start + chunk) / (time.perf_counter() - started):.0f}/s, "
                  f"load {loads[-1]}", flush=True)
    ended = time.perf_counter()
    if timings is not None and tail_started is not None:
        timings.update({"enrol_per_s_last_tenth": round((len(enrolled) - tail_from) / (ended - tail_started)),
                        "enrol_load": f"{min(loads)}-{max(loads)}"})
    return len(enrolled) / (ended - started)


def query(gallery: Any, asked: np.ndarray, truth: list[str]) -> dict[str, Any]:
    gallery.search(asked[0], top_k=1)  # warm-up: loads descriptors, builds indexes
    times, found = [], []
    for vector in asked:
        started = time.perf_counter()
        best = gallery.search(vector, top_k=1)
        times.append(time.perf_counter() - started)
        found.append(best[0].name if best else None)
    recall = float(np.mean([a == b for a, b in zip(found, truth)]))
    return {"median_ms": round(1000 * statistics.median(times), 3), "p90_ms": round(1000 * float(np.percentile(times, 90)), 3),
            "recall_at_1": round(recall, 4)}


def bench_gallery(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from slimvision.inference.face_gallery import DLIB_RESNET_V1, Gallery, SQLiteGallery

    enrolled, asked, who = descriptors(args.gallery_size, args.queries)
    # Exact nearest person of each query (the recall reference): the SQLite + numpy search, by
    # construction exact, checked here against a direct numpy argmin.
    rows: dict[str, Any] = {}
    sqlite = SQLiteGallery(work / "gallery.sqlite", DLIB_RESNET_V1)
    timings: dict[str, Any] = {}
    rate = enrol(sqlite, enrolled, args.chunk, timings)
    exact = Gallery(sqlite)
    truth = [exact.search(vector, top_k=1)[0].name for vector in asked[:5]]
    direct = [f"p{int(np.argmin(((enrolled - v) ** 2).sum(1))) // 4}" for v in asked[:5]]
    assert truth == direct, (truth, direct)
    truth = [exact.search(vector, top_k=1)[0].name for vector in asked]
    rows["sqlite_numpy"] = {"enrol_per_s": round(rate), **timings, **query(exact, asked, truth), "load": load()}
    print(f"  sqlite+numpy: {rows['sqlite_numpy']}", flush=True)
    if faiss_available():
        rows["sqlite_faiss"] = {"enrol_per_s": round(rate), **query(Gallery(sqlite, index="faiss"), asked, truth),
                                "load": load()}
        print(f"  sqlite+faiss: {rows['sqlite_faiss']}", flush=True)
    sqlite.close()
    rows.update(bench_milvus(args, work, enrolled, asked, who, truth))
    return {"descriptors": args.gallery_size, "queries": args.queries, "chunk": args.chunk, "stores": rows}


def bench_milvus(args: argparse.Namespace, work: Path, enrolled: np.ndarray, asked: np.ndarray, who: np.ndarray,
                 truth: list[str]) -> dict[str, Any]:
    """milvus-lite on the first ``--milvus-size`` descriptors (its enrolment slows as it grows:
    1,000,000 would take hours here), queried with the photos of the people it holds."""
    from slimvision.inference.face_gallery import DLIB_RESNET_V1, Gallery
    from slimvision.inference.face_gallery_milvus import MilvusGallery

    size = min(args.milvus_size, len(enrolled))
    if size < len(enrolled):
        held = who * 4 + 4 <= size
        asked = asked[held]
        truth = [f"p{int(np.argmin(((enrolled[:size] - v) ** 2).sum(1))) // 4}" for v in asked]
    if args.milvus_uri:
        return bench_milvus_server(args, enrolled[:size], asked, truth)
    rows: dict[str, Any] = {}
    args.milvus_index = args.milvus_index or "IVF_FLAT"
    name = f"milvus_lite_{args.milvus_index.lower()}"
    milvus = MilvusGallery(f"milvus://{work}/gallery.db?index={args.milvus_index}", DLIB_RESNET_V1)
    timings: dict[str, Any] = {}
    rate = enrol(milvus, enrolled[:size], args.chunk, timings)
    rows[name] = {"descriptors": size, "enrol_per_s": round(rate), **timings, **query(Gallery(milvus), asked, truth),
                  "queries": len(asked), "load": load()}
    milvus.close()
    print(f"  milvus-lite ({args.milvus_index}): {rows[name]}", flush=True)
    # Reopened, as a later process would find it: its data sealed into indexed segments.
    started = time.perf_counter()
    reopened = MilvusGallery(f"milvus://{work}/gallery.db", DLIB_RESNET_V1, mode="r")
    opened = time.perf_counter() - started
    rows[f"{name}_reopened"] = {"descriptors": size, "open_s": round(opened, 1), **query(Gallery(reopened), asked, truth),
                                "queries": len(asked), "load": load()}
    reopened.close()
    print(f"  milvus-lite reopened: {rows[f'{name}_reopened']}", flush=True)
    return rows


def bench_milvus_server(args: argparse.Namespace, enrolled: np.ndarray, asked: np.ndarray,
                        truth: list[str]) -> dict[str, Any]:
    """A Milvus server (``--milvus-uri milvus://HOST:PORT``): a new collection, enrolled, queried
    at once (its rows still in growing segments), then again after a flush once every sealed
    segment's index is built, and from a second client; dropped at the end."""
    from slimvision.inference.face_gallery import DLIB_RESNET_V1, Gallery
    from slimvision.inference.face_gallery_milvus import MilvusGallery

    index = args.milvus_index or "HNSW"  # the store's default on a server
    location = f"{args.milvus_uri.rstrip('/')}/bench_{os.getpid()}_{int(time.time())}?index={index}"
    name = f"milvus_server_{index.lower()}"
    rows: dict[str, Any] = {}
    milvus = MilvusGallery(location, DLIB_RESNET_V1)
    try:
        timings: dict[str, Any] = {}
        rate = enrol(milvus, enrolled, args.chunk, timings)
        server = str(milvus.client.get_server_version())
        rows[name] = {"server": server, "descriptors": len(enrolled), "enrol_per_s": round(rate), **timings,
                      **query(Gallery(milvus), asked, truth), "queries": len(asked), "load": load()}
        print(f"  Milvus server {server} ({index}), just enrolled: {rows[name]}", flush=True)
        started = time.perf_counter()
        milvus.client.flush(milvus.collection)
        while time.perf_counter() - started < 1800:  # every sealed segment indexed (or half an hour)
            state = milvus.client.describe_index(milvus.collection, "vector")
            if int(state.get("pending_index_rows", 0)) == 0 and int(state.get("indexed_rows", 0)) >= len(enrolled):
                break
            time.sleep(1)
        indexed = time.perf_counter() - started
        rows[f"{name}_indexed"] = {"descriptors": len(enrolled), "flush_and_index_s": round(indexed, 1),
                                   "indexed_rows": int(state.get("indexed_rows", 0)),
                                   **query(Gallery(milvus), asked, truth), "queries": len(asked), "load": load()}
        print(f"  flushed, indexed: {rows[f'{name}_indexed']}", flush=True)
        started = time.perf_counter()
        with MilvusGallery(location.partition("?")[0], DLIB_RESNET_V1, mode="r") as second:
            opened = time.perf_counter() - started
            rows[f"{name}_second_client"] = {"descriptors": len(enrolled), "open_s": round(opened, 2),
                                             **query(Gallery(second), asked, truth), "queries": len(asked),
                                             "load": load()}
        print(f"  a second client: {rows[f'{name}_second_client']}", flush=True)
    finally:
        if milvus.client is not None:
            for collection in (milvus.collection, milvus.meta):
                milvus.client.drop_collection(collection)
        milvus.close()
    return rows


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("ray", "pymilvus", "milvus-lite", "milvus", "faiss-cpu", "onnxruntime", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--sizes", type=lambda text: [int(part) for part in text.split(",")], default=[256, 768],
                        help="sides of the batch images, px, comma-separated (default 256,768)")
    parser.add_argument("--kill-size", type=int, default=256, help="side of the killed batch's images, px")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the four batch runs")
    parser.add_argument("--kill-images", type=int, default=40)
    parser.add_argument("--gallery-size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--milvus-size", type=int, default=100_000,
                        help="descriptors enrolled into milvus-lite (its enrolment slows as it grows; default 100,000)")
    parser.add_argument("--milvus-index", choices=["HNSW", "IVF_FLAT", "FLAT"],
                        help="the Milvus gallery's vector index (default: the store's, IVF_FLAT in a milvus-lite "
                             "file, HNSW on a server)")
    parser.add_argument("--milvus-uri", metavar="milvus://HOST:PORT",
                        help="a Milvus server to measure instead of milvus-lite (a new collection, dropped at the "
                             "end; docs/scale.md 'A Milvus server here')")
    parser.add_argument("--chunk", type=int, default=20_000, help="descriptors per add_people call")
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--skip-kill", action="store_true")
    parser.add_argument("--skip-gallery", action="store_true")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    from slimvision.io.atomic import write_text_atomic

    previous = json.loads(args.output.read_text()) if args.output.is_file() else {}
    result: dict[str, Any] = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                          "load_at_start": load()},
                              "versions": versions(), "command": " ".join(["python", *sys.argv])}
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as folder:
        work = Path(folder)
        for part, skip, run in (("batch", args.skip_batch, lambda: bench_batch(args, work)),
                                ("kill", args.skip_kill, lambda: bench_kill(work, args.kill_images, args.kill_size)),
                                ("gallery", args.skip_gallery, lambda: bench_gallery(args, work))):
            if skip:
                result[part] = previous.get(part)  # keep the last measured figures of a skipped part
                continue
            print(f"{part}:", flush=True)
            result[part] = run()
            write_text_atomic(args.output, json.dumps(result, indent=2) + "\n", overwrite=True)  # each part as it ends
    print(json.dumps({key: result[key] for key in ("batch", "kill", "gallery") if result.get(key)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
