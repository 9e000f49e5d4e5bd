"""A server under hostile load: 50 clients sending oversized and malformed requests for
60 s while one client keeps sending well-formed searches.

    python benchmarks/hostile_load.py [--clients 50] [--seconds 60] [--ceiling-mb 3000]

Starts `mmsearch serve` on 127.0.0.1 (loopback only) over a store of 2,000 items (a tiny
random model, text and vector rows), samples the server's resident memory (VmRSS) every
0.2 s, and stops everything after `--seconds`. Hostile requests: texts with 100k `-word`
negatives, `in` filters with 3M values (over the body limit) and with 20k values, filters
nested 10k deep, 81- and 169-megapixel PNGs of a few KB, bodies over the size limit,
NaN/Inf vectors, huge k, malformed JSON, 10k-record upserts, thumbnails and media of
unknown ids. Reports the peak memory against the ceiling, the status codes, and the good
client's success rate and latency. Exit 1 when memory went over the ceiling, a 5xx was
answered, or a well-formed search failed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from tiny_model import make_tiny_model  # noqa: E402

import mmsearch  # noqa: E402


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def png(size: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (size, size)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def hostile(i: int, dim: int, pngs: list[bytes]) -> tuple[str, str, dict]:
    """(method, path, httpx kwargs) of the i-th hostile request."""
    kind = i % 12
    if kind == 0:
        return "POST", "/search", {"json": {"text": "x " + " ".join(
            f"-w{j}" for j in range(100_000))}}
    if kind == 1:
        body = '{"text": "x", "filters": {"id": {"in": [' + ",".join(["1"] * 3_000_000) + "]}}}"
        return "POST", "/search", {"content": body, "headers": {"content-type":
                                                                "application/json"}}
    if kind == 2:
        return "POST", "/search", {"json": {"text": "x", "filters": {"id": {"in": [
            str(j) for j in range(20_000)]}}}}
    if kind == 3:
        deep = "[" * 10_000 + "1" + "]" * 10_000
        return "POST", "/search", {"content": '{"text": "x", "filters": {"a": {"in": '
                                   + deep + "}}}", "headers": {"content-type":
                                                               "application/json"}}
    if kind == 4:
        return "POST", "/search/image", {"files": {"image": ("big.png", pngs[i % 2])}}
    if kind == 5:
        return "POST", "/search", {"content": "{" + " " * 30_000_000 + "}",
                                   "headers": {"content-type": "application/json"}}
    if kind == 6:
        return "POST", "/search", {"content": '{"vector": [' + ",".join(["NaN"] * dim) + "]}",
                                   "headers": {"content-type": "application/json"}}
    if kind == 7:
        return "POST", "/search", {"json": {"text": "x", "k": 10**12}}
    if kind == 8:
        return "POST", "/search", {"content": '{"text": ', "headers": {
            "content-type": "application/json"}}
    if kind == 9:
        return "POST", "/upsert", {"json": {"records": [{"id": f"h{j}", "text": "t" * 50}
                                                        for j in range(10_001)]}}
    if kind == 10:
        return "GET", f"/thumbnail/nope{i}", {}
    return "POST", "/search", {"json": {"text": ["a"] * 5000}}


async def run(base: str, args: argparse.Namespace, dim: int, queries: np.ndarray,
              codes: collections.Counter, good: list[float], bad: list[str]) -> None:
    stop = time.perf_counter() + args.seconds
    pngs = [png(9000), png(13000)]
    limits = httpx.Limits(max_connections=args.clients + 5)

    async def attacker(n: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
            i = n
            while time.perf_counter() < stop:
                method, path, kw = hostile(i, dim, pngs)
                try:
                    r = await http.request(method, path, **kw)
                    codes[f"{path} {r.status_code}"] += 1
                except httpx.HTTPError as e:
                    codes[f"{path} {type(e).__name__}"] += 1
                i += args.clients

    async def searcher() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            i = 0
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    body = {"vector": queries[i % len(queries)].tolist(), "k": 10,
                            "filters": {"n": {"lt": 1000}}} if i % 2 else {"text": "item 3",
                                                                           "k": 10}
                    r = await http.post("/search", json=body)
                    if r.status_code == 200 and r.json()["results"]:
                        good.append(time.perf_counter() - started)
                    else:
                        bad.append(f"{r.status_code} {r.text[:120]}")
                except httpx.HTTPError as e:
                    bad.append(repr(e))
                i += 1
                await asyncio.sleep(0.05)

    await asyncio.gather(searcher(), *(attacker(n) for n in range(args.clients)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--ceiling-mb", type=float, default=3000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mmsearch-hostile-"))
    spec = make_tiny_model(root / "model")
    col = mmsearch.open(root / "store", model=spec)
    dim = col.encoder.dim
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(1000, dim))
    col.upsert([{"id": f"v{i}", "vector": vecs[i].tolist(), "n": i} for i in range(1000)])
    col.upsert([{"id": f"t{i}", "text": f"item {i}", "n": i} for i in range(1000)])
    col.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "mmsearch", "serve", "--store",
                               str(root / "store"), "--host", "127.0.0.1", "--port", str(port)],
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        idle = rss_mb(server.pid)
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(rss_mb(server.pid))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        codes: collections.Counter = collections.Counter()
        good: list[float] = []
        bad: list[str] = []
        started = time.time()
        asyncio.run(run(base, args, dim, vecs / np.linalg.norm(vecs, axis=1, keepdims=True),
                        codes, good, bad))
        done.set()
        sampler.join()
        alive = httpx.get(base + "/health", timeout=10).status_code == 200
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    errors = server.stderr.read().decode(errors="replace") if server.stderr else ""
    five = {k: v for k, v in codes.items() if k.split()[-1].startswith("5")}
    out = {"clients": args.clients, "seconds": round(time.time() - started, 1),
           "idle_rss_mb": round(idle), "peak_rss_mb": round(max(samples or [0])),
           "ceiling_mb": args.ceiling_mb, "hostile_requests": sum(codes.values()),
           "status": dict(sorted(codes.items())), "server_errors": five,
           "good_searches": len(good), "good_failed": len(bad), "good_failures": bad[:5],
           "good_p50_ms": round(1000 * statistics.median(good), 1) if good else None,
           "good_p95_ms": round(1000 * np.percentile(good, 95), 1) if good else None,
           "alive_after": alive, "tracebacks": errors.count("Traceback"),
           "load_average": os.getloadavg()}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    ok = out["peak_rss_mb"] <= args.ceiling_mb and not five and not bad and alive
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
