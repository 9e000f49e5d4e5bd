"""Query latency: cold CLI (process start to results) and warm library queries.

    python benchmarks/query_latency.py [--sizes 10000 100000] [--model ViT-B-32-256]

Stores of N synthetic 512-d unit vectors (clustered, like real embeddings) with image-like
metadata are built through `Collection.upsert`. The model's weights are random but saved
to and loaded from a checkpoint file, as a real model would be; only speed is measured.
Warm queries are split into text encoding, vector search and metadata (rows → results);
cold queries time `mmsearch query ... --json` as a fresh process, split into Python +
library import, model load, and the rest.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

import mmsearch
from benchmarks._harness import clustered_vectors, median_ms
from mmsearch.planner.search import to_result

OUT = Path(__file__).resolve().parent / "out"
QUERIES = ["a dog running on the beach", "red mug on a desk", "two children playing soccer",
           "a man riding a bike in the city", "snowy mountain at sunset"]


def checkpoint(arch: str) -> str:
    """A random-weights checkpoint for `arch`, saved once under benchmarks/out/."""
    import open_clip
    import torch

    path = OUT / f"{arch}-random.pt"
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        torch.manual_seed(0)
        torch.save(open_clip.create_model(arch, pretrained=None).state_dict(), path)
    return f"{arch}:{path}"


def build_store(path: Path, n: int, dim: int, spec: str, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vecs = clustered_vectors(rng, n, dim, max(16, n // 100), 0.5)
    start = datetime(2015, 1, 1)
    table = pa.table({
        "id": [f"img{i:07d}" for i in range(n)],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), dim),
        "path": [f"/photos/{i // 1000:04d}/img{i:07d}.jpg" for i in range(n)],
        "modality": ["image"] * n,
        "width": rng.integers(200, 4000, n).astype(np.int32),
        "height": rng.integers(200, 3000, n).astype(np.int32),
        "taken_at": [start + timedelta(hours=int(h)) for h in rng.integers(0, 24 * 3650, n)],
    })
    with mmsearch.open(path, model=spec) as col:
        col.upsert(table)


def warm(path: Path, repeats: int, where: str | None) -> dict[str, float]:
    col = mmsearch.open(path)
    t = time.perf_counter()
    encoder = col.encoder
    load = time.perf_counter() - t
    col.search(text="warm up", k=10, where=where)
    enc, search, meta, total = [], [], [], []
    for i in range(repeats):
        text = QUERIES[i % len(QUERIES)] + f" {i}"
        t0 = time.perf_counter()
        q = encoder.encode_texts([text])[0]
        t1 = time.perf_counter()
        snap = col.snapshot()
        rows = snap.matching_rows(where) if where else None
        scores, found = snap.index.search(q[None, :], 10, rows)
        t2 = time.perf_counter()
        records = snap.records(found[0][found[0] >= 0])
        results = [to_result(float(s), r) for s, r in zip(scores[0], records, strict=True)]
        t3 = time.perf_counter()
        assert len(results) == 10
        col.search(text=text, k=10, where=where)
        t4 = time.perf_counter()
        enc.append(t1 - t0)
        search.append(t2 - t1)
        meta.append(t3 - t2)
        total.append(t4 - t3)
    return {"model load": 1000 * load, "text encoding": median_ms(enc),
            "search": median_ms(search), "metadata": median_ms(meta),
            "search + metadata": median_ms([a + b for a, b in zip(search, meta, strict=True)]),
            "col.search() total": median_ms(total)}


def cold(path: Path, repeats: int) -> dict[str, float]:
    exe = [sys.executable, "-m", "mmsearch"]
    imports, totals = [], []
    for i in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import mmsearch.cli, torch, open_clip"],
                       check=True)
        imports.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = subprocess.run([*exe, "query", QUERIES[i % len(QUERIES)], "--store", str(path),
                              "--json"], capture_output=True, text=True, check=True)
        totals.append(time.perf_counter() - t)
        assert len(out.stdout.splitlines()) == 10
    return {"python start + imports": median_ms(imports), "whole query": median_ms(totals)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--model", default="ViT-B-32-256")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--cold-repeats", type=int, default=3)
    args = parser.parse_args()
    spec = checkpoint(args.model)
    from mmsearch.encoders.registry import load_encoder

    dim = load_encoder(spec).dim
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(tmp) / f"store{n}"
            t = time.perf_counter()
            build_store(path, n, dim, spec)
            print(f"\n### {n:,} vectors ({dim}-d), built in {time.perf_counter() - t:.1f} s; "
                  f"index: {mmsearch.open(path).info()['index']}")
            print("| warm library query (median ms) | no filter | `--where` 10% |\n|---|---|---|")
            plain = warm(path, args.repeats, None)
            filtered = warm(path, args.repeats, "taken_at >= '2024-01-01'")
            for key in plain:
                print(f"| {key} | {plain[key]:.2f} | {filtered[key]:.2f} |")
            c = cold(path, args.cold_repeats)
            print(f"| cold CLI: python start + imports | {c['python start + imports']:.0f} | |")
            print(f"| cold CLI: whole `mmsearch query --json` | {c['whole query']:.0f} | |")


if __name__ == "__main__":
    main()
