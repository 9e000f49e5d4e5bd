"""Load test of `mmsearch serve`: many concurrent clients against a 100k-item store.

    python benchmarks/serve_load.py [--items 100000] [--clients 50] [--seconds 60]
        [--workers N] [--rounds 3] [--no-writes]

Builds a store of N clustered random unit vectors (dim 256) with product metadata through
`Collection.upsert` (the precomputed-vector fast path), starts `mmsearch serve --workers W`
as its own process, and runs C asyncio clients (httpx) for S seconds in R rounds. Each
client loops over vector queries (k=10), half of them with structured filters, a quarter
asking for facets; unless `--no-writes`, a writer upserts 100 changed products through the
API every 2 s meanwhile. Interleaved with the rounds, the baseline: the library's own
search rate on the same store and request mix, no HTTP, from 1 thread and from 2×cores
threads (the better of the two is "the library's multi-threaded rate"). Reports
throughput, p50/p99 latency, errors (any non-200 or transport error) and the load average.
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
    """One keep-alive connection sending prepared requests: HTTP/1.1 over asyncio streams,
    so the load generator costs little CPU next to the server it measures."""
    host, port = base.removeprefix("http://").split(":")
    bodies = [json.dumps(request_body(seed + 7 * j, queries)).encode() for j in range(64)]
    reader, writer_ = await asyncio.open_connection(host, int(port))
    i = 0
    try:
        while time.perf_counter() < stop:
            body = bodies[i % len(bodies)]
            started = time.perf_counter()
            try:
                writer_.write(b"POST /search HTTP/1.1\r\nHost: %s\r\nContent-Type: "
                              b"application/json\r\nContent-Length: %d\r\n\r\n%s"
                              % (host.encode(), len(body), body))
                status, payload = await read_response(reader)
                if status != 200 or b'"results"' not in payload:
                    errors.append(f"{status}: {payload[:200]!r}")
                else:
                    latencies.append(time.perf_counter() - started)
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                errors.append(repr(e))
                writer_.close()
                reader, writer_ = await asyncio.open_connection(host, int(port))
            i += 1
    finally:
        writer_.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(v) for k, _, v in (line.partition(":") for line in lines[1:])
                  if k.lower() == "content-length")
    return status, await reader.readexactly(length)


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


def library_rate(col: mmsearch.Collection, queries: np.ndarray, threads: int,
                 seconds: float) -> float:
    """`col.search` (+ facets) requests/s from `threads` threads (same request mix, no
    HTTP, one FAISS thread per search like the server's requests)."""
    from concurrent.futures import ThreadPoolExecutor

    from mmsearch.index import set_threads

    stop = time.perf_counter() + seconds

    def loop(seed: int) -> int:
        set_threads(1)
        n = 0
        while time.perf_counter() < stop:
            body = request_body(seed + 7 * n, queries)
            col.search(vector=body["vector"], k=10, filters=body.get("filters"))
            if "facets" in body:
                col.facets(body["facets"], vector=body["vector"], k=10,
                           filters=body.get("filters"))
            n += 1
        return n

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        done = sum(pool.map(loop, range(threads)))
    return done / (time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, workers: int) -> None:
    """Until every worker answers /health (each reports its pid)."""
    pids: set[int] = set()
    deadline = time.perf_counter() + 300
    while len(pids) < workers and time.perf_counter() < deadline:
        try:
            pids.add(httpx.get(base + "/health", timeout=5).json()["pid"])
        except httpx.HTTPError:
            time.sleep(0.2)


def http_round(base: str, queries: np.ndarray, clients: int, seconds: float,
               writes: bool) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    upserts: list[float] = []

    async def run() -> float:
        started = time.perf_counter()
        stop = started + seconds
        tasks = [client(base, queries, stop, s, latencies, errors) for s in range(clients)]
        if writes:
            tasks.append(writer(base, stop, upserts, errors))
        await asyncio.gather(*tasks)
        return time.perf_counter() - started

    wall = asyncio.run(run())
    lat = sorted(latencies)
    return {"wall_s": wall, "ok": len(lat), "errors": errors, "upserts": upserts,
            "qps": len(lat) / wall,
            "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None,
            "mean_ms": 1000 * statistics.fmean(lat) if lat else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60, help="HTTP load per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-writes", action="store_true", help="no upserts during the load")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    threads = 2 * (os.cpu_count() or 1)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        t0 = time.perf_counter()
        queries = build_store(store, args.items)
        build_s = time.perf_counter() - t0
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "mmsearch", "serve", "--store",
                                   str(store), "--port", str(port), "--workers",
                                   str(args.workers)],
                                  env={**os.environ, "PYTHONPATH": str(Path.cwd())})
        base = f"http://127.0.0.1:{port}"
        try:
            with mmsearch.open(store) as col:
                info = col.info()
                col.search(vector=queries[0], k=10)
                wait_ready(base, args.workers)
                for r in range(args.rounds):
                    load = os.getloadavg()[0]
                    one = library_rate(col, queries, 1, args.seconds / 3)
                    many = library_rate(col, queries, threads, args.seconds / 3)
                    http = http_round(base, queries, args.clients, args.seconds,
                                      not args.no_writes)
                    rounds.append({"round": r, "load_before": round(load, 2),
                                   "library_1thread_qps": round(one, 1),
                                   f"library_{threads}threads_qps": round(many, 1),
                                   "http": http, "ratio": http["qps"] / max(one, many)})
                    print(f"round {r}: load {load:.1f}, library {one:.1f}/{many:.1f} qps, "
                          f"http {http['qps']:.1f} qps p50 {http['p50_ms']:.0f} ms p99 "
                          f"{http['p99_ms']:.0f} ms, errors {len(http['errors'])}",
                          file=sys.stderr)
            items_after = httpx.get(base + "/stats", timeout=30).json()["items"]
        finally:
            server.terminate()
            server.wait(timeout=60)
    errors = [e for r in rounds for e in r["http"]["errors"]]
    upserts = [u for r in rounds for u in r["http"]["upserts"]]
    median = statistics.median
    out = {
        "items": args.items, "clients": args.clients, "workers": args.workers,
        "seconds_per_round": args.seconds, "rounds": args.rounds, "writes": not args.no_writes,
        "index": info["index"], "build_s": round(build_s, 1), "cpus": os.cpu_count(),
        "requests_ok": sum(r["http"]["ok"] for r in rounds), "errors": len(errors),
        "error_samples": errors[:3],
        "http_qps_median": round(median(r["http"]["qps"] for r in rounds), 1),
        "p50_ms_median": round(median(r["http"]["p50_ms"] for r in rounds), 1),
        "p99_ms_median": round(median(r["http"]["p99_ms"] for r in rounds), 1),
        "library_multithread_qps_median": round(median(
            max(r["library_1thread_qps"], r[f"library_{threads}threads_qps"])
            for r in rounds), 1),
        "http_vs_library_ratio_median": round(median(r["ratio"] for r in rounds), 2),
        "upserts": len(upserts),
        "upsert_p50_ms": round(1000 * median(upserts), 1) if upserts else None,
        "items_after": items_after, "load_after": round(os.getloadavg()[0], 2),
        "per_round": [{**{k: v for k, v in r.items() if k != "http"},
                       "http_qps": round(r["http"]["qps"], 1),
                       "p50_ms": round(r["http"]["p50_ms"], 1),
                       "p99_ms": round(r["http"]["p99_ms"], 1),
                       "ratio": round(r["ratio"], 2)} for r in rounds],
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
