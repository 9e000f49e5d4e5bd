"""Sharded stores and Ray: ingestion throughput, query latency/QPS with 1, 2 and 4 shards,
the merge overhead per query, and what Ray adds (same process, interleaved rounds).

Data: N synthetic 512-d unit vectors (Gaussian mixture, 1,000 centres of norm ~1, noise
of norm ~0.6) upserted with a
`price` column; queries are fresh draws from the mixture. Stores: one plain store (the
baseline) and sharded stores of 1, 2 and 4 shards holding the same rows. In-process
search is timed in rounds that rotate the order of the stores; each round gives a ratio of
per-query times to the plain store (the tables report median and min-max). Ray: the
4-shard store served by 4 shard actors on a local cluster (`ray.init(num_cpus=2)`),
sequential latency and the QPS of 4 concurrent clients. Files: the same photos indexed
locally and on a Ray Data encoder pool (a tiny random model: pipeline overhead, not model
speed).

    PYTHONPATH=. python benchmarks/ray_scale.py [--rows 100000] [--queries 200]
        [--rounds 3] [--files 48] [--no-ray] [--out benchmarks/ray_scale_results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

import mmsearch
from mmsearch.shards import collection as sharded_module

DIM = 512


def mixture(n: int, seed: int, centres: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, DIM)) / np.sqrt(
        DIM)  # centres have norm ~1: clusters, no near-duplicates
    v = v.astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def upsert_all(col, vecs: np.ndarray, chunk: int = 25_000) -> float:
    """Seconds to upsert every row in chunks (each chunk one commit per shard)."""
    t = time.perf_counter()
    for lo in range(0, len(vecs), chunk):
        hi = min(lo + chunk, len(vecs))
        col.upsert(pa.table({"id": [f"i{i}" for i in range(lo, hi)],
                             "vector": list(vecs[lo:hi]),
                             "price": np.arange(lo, hi) % 1000}))
    return time.perf_counter() - t


def timed_queries(col, queries: np.ndarray, k: int = 10, **kw) -> list[float]:
    out = []
    for q in queries:
        t = time.perf_counter()
        col.search(vector=q, k=k, **kw)
        out.append(time.perf_counter() - t)
    return out


class MergeClock:
    """Time spent in the shard merge (wraps `mmsearch.shards.collection.merge`)."""

    def __init__(self) -> None:
        self.seconds, self.calls = 0.0, 0
        self._orig = sharded_module.merge

    def __enter__(self) -> MergeClock:
        def timed(*a, **kw):
            t = time.perf_counter()
            try:
                return self._orig(*a, **kw)
            finally:
                self.seconds += time.perf_counter() - t
                self.calls += 1
        sharded_module.merge = timed
        return self

    def __exit__(self, *exc: object) -> None:
        sharded_module.merge = self._orig


def ms(values: list[float], q: float = 0.5) -> float:
    return round(1000 * float(np.quantile(values, q)), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--files", type=int, default=48)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--ann-threshold", type=int, default=10**9)
    ap.add_argument("--out", default="benchmarks/ray_scale_results.json")
    args = ap.parse_args()
    out: dict = {"rows": args.rows, "queries": args.queries, "rounds": args.rounds,
                 "load_before": load(), "cpus": os.cpu_count()}
    centres = np.random.default_rng(0).normal(size=(1000, DIM)) / np.sqrt(DIM)
    vecs = mixture(args.rows, 1, centres)
    queries = mixture(args.queries, 2, centres)
    work = Path(tempfile.mkdtemp(prefix="rayscale-"))
    # exact search everywhere (IVF-PQ from `--ann-threshold` rows per store/shard): the
    # comparison is of sharding, not of index types; each shard's own index at scale is in
    # the ANN section of RESULTS.md
    params = {"threshold": args.ann_threshold}
    stores = {"plain": mmsearch.open(work / "plain", index_params=params)}
    for n in args.shards:
        stores[f"{n} shards"] = mmsearch.open(work / f"s{n}", shards=n, index_params=params)
    ingest = {}
    for name, col in stores.items():
        seconds = upsert_all(col, vecs)
        ingest[name] = {"seconds": round(seconds, 2), "rows_per_s": round(args.rows / seconds)}
        print(f"ingest {name}: {ingest[name]}", flush=True)
    out["upsert"] = ingest
    snap = stores["plain"].snapshot()
    out["metadata_bytes_per_row"] = round(snap.table.nbytes / len(snap), 1)
    # exactness: the same ids for every query
    check = queries[:20]
    for name, col in stores.items():
        assert [[r.id for r in col.search(vector=q)] for q in check] == \
            [[r.id for r in stores["plain"].search(vector=q)] for q in check], name
    for col in stores.values():  # warm: snapshots, layouts, calibration
        timed_queries(col, queries[:5])
    names = list(stores)
    rounds: dict[str, list[list[float]]] = {n: [] for n in names}
    merge_share: dict[str, list[float]] = {n: [] for n in names if n != "plain"}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            with MergeClock() as clock:
                lat = timed_queries(stores[name], queries)
            rounds[name].append(lat)
            if name != "plain":
                merge_share[name].append(clock.seconds / max(clock.calls, 1))
        print(f"round {r + 1}: " + ", ".join(f"{n} {ms(rounds[n][-1])} ms" for n in names),
              flush=True)
    table = {}
    for name in names:
        ratios = [statistics.median(rounds[name][i]) / statistics.median(rounds["plain"][i])
                  for i in range(args.rounds)]
        flat = [x for rd in rounds[name] for x in rd]
        table[name] = {"p50_ms": ms(flat), "p95_ms": ms(flat, 0.95),
                       "qps_1_client": round(len(flat) / sum(flat), 1),
                       "ratio_to_plain_median": round(statistics.median(ratios), 3),
                       "ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
                       "merge_ms_per_query": (round(1000 * statistics.median(merge_share[name]),
                                                    3) if name in merge_share else None)}
    out["in_process"] = table
    if not args.no_ray:
        out["ray"] = ray_part(work, stores, queries, max(args.shards), args.files, params)
    out["load_after"] = load()
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


def ray_part(work: Path, stores: dict, queries: np.ndarray, n: int, files: int,
             params: dict) -> dict:
    import ray

    from mmsearch.distributed import RayCollection

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(mmsearch.__file__).parents[1])}})
    out: dict = {}
    try:
        t = time.perf_counter()
        col = RayCollection(work / f"s{n}", address="local", index_params=params)
        col.actors  # noqa: B018 - start and load the shard actors
        out["actor_start_s"] = round(time.perf_counter() - t, 1)
        timed_queries(col, queries[:5])
        seq = timed_queries(col, queries)
        local = timed_queries(stores[f"{n} shards"], queries)
        out[f"{n} shards sequential"] = {"p50_ms": ms(seq), "p95_ms": ms(seq, 0.95),
                                         "in_process_p50_ms": ms(local),
                                         "ray_overhead_p50_ms": round(ms(seq) - ms(local), 3)}
        with ThreadPoolExecutor(4) as pool:
            t = time.perf_counter()
            list(pool.map(lambda q: col.search(vector=q, k=10), queries))
            out[f"{n} shards 4 clients"] = {"qps": round(len(queries) /
                                                          (time.perf_counter() - t), 1)}
        col.close()
        if files:
            out["files"] = ray_files(work, files)
    finally:
        ray.shutdown()
    return out


def ray_files(work: Path, n: int) -> dict:
    """Index n photos with a tiny random model locally and on a Ray Data encoder pool."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers import make_photo
    from tiny_model import make_tiny_model

    from mmsearch.distributed import RayCollection

    spec = make_tiny_model(work / "model")
    photos = work / "photos"
    for i in range(n):
        make_photo(photos / f"p{i}.jpg", seed=i, size=(320, 240))
    out = {}
    local = mmsearch.open(work / "files-local", model=spec, shards=2)
    t = time.perf_counter()
    report = local.index([photos], progress=False)
    out["local_files_per_s"] = round(report.added / (time.perf_counter() - t), 2)
    remote = RayCollection(work / "files-ray", model=spec, shards=2, address="local")
    t = time.perf_counter()
    report = remote.index([photos], progress=False)
    out["ray_files_per_s"] = round(report.added / (time.perf_counter() - t), 2)
    out["note"] = "Ray time includes starting the encoder actor pool (2 actors)"
    return out


if __name__ == "__main__":
    main()
