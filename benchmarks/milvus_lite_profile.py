"""Where milvus-lite's search time goes, per vector index (issue 27's 20 ms gallery target).

    OMP_NUM_THREADS=1 python benchmarks/milvus_lite_profile.py            # 100,000 rows, about 5 minutes
    OMP_NUM_THREADS=1 python benchmarks/milvus_lite_profile.py --rows 1000000 --indexes IVF_FLAT \
        -o benchmarks/results/milvus_lite_profile_1m.json                # the gallery target's size

For each index type (FLAT, HNSW, IVF_FLAT at several ``nprobe``): ``--rows`` synthetic 128-d
descriptors (the gallery benchmark's: 4 per person) inserted into a fresh milvus-lite
collection, sealed, its index built; then ``--queries`` new photos searched top-1 grouped by
person, as the Milvus gallery asks, twice: inside the engine (``Collection.search``, in this
process) and through pymilvus (gRPC). ``index_ms`` is the time inside the index's own search
call (FAISS, or numpy for FLAT); the rest of each query is milvus-lite's Python pass over every
row before it (the newest version of each primary key, tombstones), which no index choice
removes. Also recorded: what ``describe_index`` reports and which index class each segment holds.

Writes benchmarks/results/milvus_lite_profile.json (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_bench import descriptors, load, versions  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "milvus_lite_profile.json"
CASES = [("FLAT", {}, [{}]), ("HNSW", {"M": 16, "efConstruction": 200}, [{"ef": 128}]),
         ("IVF_FLAT", {"nlist": 1024}, [{"nprobe": 8}, {"nprobe": 16}, {"nprobe": 32}])]


def timed_index_calls() -> list[float]:
    """Wrap every vector index's ``search`` so the time spent inside it is added to the returned cell."""
    from milvus_lite.index import brute_force, faiss_hnsw, faiss_ivf_flat

    spent = [0.0]
    for cls in (brute_force.BruteForceIndex, faiss_hnsw.FaissHnswIndex, faiss_ivf_flat.FaissIvfFlatIndex):
        original = cls.search

        def search(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return _original(self, *args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - started

        cls.search = search
    return spent


def profile(kind: str, build: dict, searches: list[dict], rows: np.ndarray, asked: np.ndarray, who: np.ndarray,
            folder: Path, spent: list[float]) -> list[dict[str, Any]]:
    from milvus_lite.server_manager import server_manager_instance
    from pymilvus import DataType, MilvusClient

    path = str(folder / f"{kind.lower()}.db")
    client = MilvusClient(uri=path)
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=rows.shape[1])
    schema.add_field("person", DataType.VARCHAR, max_length=64)
    index = client.prepare_index_params()
    index.add_index("vector", index_type=kind, metric_type="L2", params=build)
    client.create_collection("faces", schema=schema, index_params=index, consistency_level="Strong")
    for start in range(0, len(rows), 10_000):
        client.insert("faces", [{"id": i, "vector": rows[i].tolist(), "person": f"p{i // 4}"}
                                for i in range(start, min(len(rows), start + 10_000))])
    client.flush("faces")
    engine = server_manager_instance._servers[os.path.abspath(path)][1].get_collection("faces")
    engine._wait_for_bg()  # the segment's index is built in the background: wait for it
    segments = [(segment.num_rows, type(segment.indexes.get("vector")).__name__)
                for segment in engine._segments_snapshot()]
    described = client.describe_index("faces", "vector")
    results = []
    for params in searches:
        for route in ("engine", "grpc"):
            times, found = [], []
            spent[0] = 0.0
            for vector in asked:
                started = time.perf_counter()
                if route == "engine":
                    hits = engine.search([vector.tolist()], top_k=1, output_fields=["person"],
                                         group_by_field="person", search_params=params)
                else:
                    hits = client.search("faces", data=[vector.tolist()], limit=1, anns_field="vector",
                                         output_fields=["person"], group_by_field="person",
                                         search_params={"metric_type": "L2", "params": params})
                times.append(time.perf_counter() - started)
                found.append(hits[0][0]["entity"]["person"])
            recall = float(np.mean([name == f"p{person}" for name, person in zip(found, who)]))
            results.append({"index": kind, "build": build, "search": params, "route": route,
                            "describe_index": described.get("index_type"), "segments": segments,
                            "median_ms": round(1000 * statistics.median(times), 2),
                            "index_ms": round(1000 * spent[0] / len(asked), 2),
                            "recall_at_1": round(recall, 4), "load": load()})
            print(json.dumps(results[-1]), flush=True)
    client.drop_collection("faces")
    client.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--indexes", default="FLAT,HNSW,IVF_FLAT", help="comma-separated (default all three)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    from slimvision.io.atomic import write_text_atomic

    rows, asked, who = descriptors(args.rows, args.queries)
    spent = timed_index_calls()
    result: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "versions": versions(),
                              "machine": {"cpus": os.cpu_count(), "load_at_start": load(),
                                          "omp_threads": os.environ.get("OMP_NUM_THREADS", "unset")},
                              "rows": args.rows, "queries": args.queries, "runs": []}
    with tempfile.TemporaryDirectory(prefix="milvus-lite-profile-") as folder:
        for kind, build, searches in CASES:
            if kind not in args.indexes.upper().split(","):
                continue
            result["runs"].extend(profile(kind, build, searches, rows, asked, who, Path(folder), spent))
    write_text_atomic(args.output, json.dumps(result, indent=2) + "\n", overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
