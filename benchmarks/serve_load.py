"""Load test of `mmsearch serve`: many concurrent clients against a 100k-item store.

    python benchmarks/serve_load.py [--items 100000] [--clients 50] [--seconds 60]

Builds a store of N clustered random unit vectors (dim 256) with product metadata through
`Collection.upsert` (the precomputed-vector fast path), starts `mmsearch serve` as its own
process, and runs C asyncio clients (httpx) for S seconds. Each client loops over vector
queries (k=10), half of them with structured filters, a quarter asking for facets. A writer
upserts 100 changed products through the API every 2 s meanwhile. Reports throughput,
p50/p99 latency and errors (any non-200 or transport error), and as the same-process
baseline the library's own single-thread search rate on the same store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa

import mmsearch
from benchmarks._harness import clustered_vectors

DIM = 256
BRANDS = [f"brand{i}" for i in range(40)]
CATEGORIES = ["shoes", "bags", "shirts", "watches", "hats", "jackets", "jeans", "socks"]


def build_store(path: Path, n: int, seed: int = 0) -> np.ndarray:
    """N products with clustered vectors and typed metadata; returns query vectors."""
    rng = np.random.default_rng(seed)
    vecs = clustered_vectors(rng, n, DIM, n // 100, 0.5)
    table = pa.table({
        "id": [f"p{i:07d}" for i in range(n)],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), DIM),
        "brand": pa.array(rng.choice(BRANDS, n)),
        "category": pa.array(rng.choice(CATEGORIES, n)),
        "price": pa.array(np.round(rng.uniform(5, 500, n), 2)),
        "in_stock": pa.array(rng.random(n) < 0.8),
    })
    with mmsearch.open(path) as col:
        col.upsert(table)
    queries = vecs[rng.integers(0, n, 256)] + 0.3 * rng.normal(size=(256, DIM)).astype(
        np.float32)
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def request_body(i: int, queries: np.ndarray) -> dict:
    body: dict = {"vector": queries[i % len(queries)].round(5).tolist(), "k": 10}
    if i % 2:
        body["filters"] = {"category": CATEGORIES[i % len(CATEGORIES)],
                           "price": {"lt": 250}, "in_stock": True}
    if i % 4 == 1:
        body["facets"] = ["brand"]
    return body


async def client(base: str, queries: np.ndarray, stop: float, seed: int,
                 latencies: list[float], errors: list[str]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        i = seed
        while time.perf_counter() < stop:
            started = time.perf_counter()
            try:
                res = await http.post("/search", json=request_body(i, queries))
                if res.status_code != 200 or "results" not in res.json():
                    errors.append(f"{res.status_code}: {res.text[:200]}")
                else:
                    latencies.append(time.perf_counter() - started)
            except httpx.HTTPError as e:
                errors.append(repr(e))
            i += 7


async def writer(base: str, stop: float, writes: list[float], errors: list[str]) -> None:
    rng = np.random.default_rng(1)
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        round_ = 0
        while time.perf_counter() < stop:
            vecs = rng.normal(size=(100, DIM))
            records = [{"id": f"p{int(j):07d}", "vector": v.round(5).tolist(),
                        "brand": "updated", "category": "shoes", "price": 1.0 + round_,
                        "in_stock": True} for j, v in zip(rng.integers(0, 1000, 100), vecs,
                                                          strict=True)]
            records = list({r["id"]: r for r in records}.values())
            started = time.perf_counter()
            try:
                res = await http.post("/upsert", json={"records": records})
            except httpx.HTTPError as e:
                errors.append(f"upsert {e!r}")
                continue
            if res.status_code != 200:
                errors.append(f"upsert {res.status_code}: {res.text[:200]}")
            else:
                writes.append(time.perf_counter() - started)
            round_ += 1
            await asyncio.sleep(2)


def library_baseline(store: Path, queries: np.ndarray, seconds: float = 10) -> float:
    """Single-thread `col.search` rate (same request mix, no HTTP, one FAISS thread like
    the server's requests), queries/s."""
    import faiss

    faiss.omp_set_num_threads(1)
    with mmsearch.open(store) as col:
        col.search(vector=queries[0], k=10)
        n, stop = 0, time.perf_counter() + seconds
        while time.perf_counter() < stop:
            body = request_body(n, queries)
            col.search(vector=body["vector"], k=10, filters=body.get("filters"))
            if "facets" in body:
                col.facets(body["facets"], vector=body["vector"], k=10,
                           filters=body.get("filters"))
            n += 1
    return n / seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        t0 = time.perf_counter()
        queries = build_store(store, args.items)
        build_s = time.perf_counter() - t0
        info = mmsearch.open(store).info()
        baseline = library_baseline(store, queries)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "mmsearch", "serve", "--store",
                                   str(store), "--port", str(port)],
                                  env={**os.environ, "PYTHONPATH": str(Path.cwd())})
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            latencies: list[float] = []
            errors: list[str] = []
            writes: list[float] = []

            async def run() -> float:
                started = time.perf_counter()
                stop = started + args.seconds
                await asyncio.gather(
                    writer(base, stop, writes, errors),
                    *(client(base, queries, stop, s, latencies, errors)
                      for s in range(args.clients)))
                return time.perf_counter() - started

            wall = asyncio.run(run())
            items_after = httpx.get(base + "/stats", timeout=30).json()["items"]
        finally:
            server.terminate()
            server.wait(timeout=30)
    lat = sorted(latencies)
    out = {
        "items": args.items, "clients": args.clients, "seconds": round(wall, 1),
        "index": info["index"], "build_s": round(build_s, 1),
        "requests_ok": len(lat), "errors": len(errors), "error_samples": errors[:3],
        "throughput_qps": round(len(lat) / wall, 1),
        "p50_ms": round(1000 * lat[len(lat) // 2], 1) if lat else None,
        "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1) if lat
        else None,
        "mean_ms": round(1000 * statistics.fmean(lat), 1) if lat else None,
        "upserts": len(writes), "upsert_p50_ms": round(1000 * statistics.median(writes), 1)
        if writes else None,
        "library_1thread_qps": round(baseline, 1),
        "http_vs_library_ratio": round(len(lat) / wall / baseline, 2) if baseline else None,
        "items_after": items_after, "cpus": os.cpu_count(),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
