"""What the query planner costs on top of the raw index search, same process, same store.

Baseline: the pre-planner search path (`snap.index.search` for the k best rows, first row
per item, their records). Planner: `Collection.search(vector=...)`, which also scores every
row of the candidate items exactly, calibrates, fuses and groups. Stores of N synthetic
512-d unit vectors via `upsert` (no model): one row per item ("photos"), and 10 rows per
item ("video moments", written through the store as one item id per 10 rows). Each query
is timed on both paths in turn (interleaved), medians reported.

    PYTHONPATH=. python benchmarks/planner_overhead.py [--rows 50000] [--repeats 50]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

import mmsearch
from benchmarks._harness import clustered_vectors, interleaved_ms, load_average
from mmsearch.store.store import Batch


def build(path: Path, vecs: np.ndarray, per_item: int) -> mmsearch.Collection:
    col = mmsearch.open(path)
    n = len(vecs)
    if per_item == 1:
        col.upsert(pa.table({"id": [f"i{i}" for i in range(n)],
                             "vector": list(vecs)}))
        return col
    table = pa.table({"id": [f"v{i // per_item}" for i in range(n)],
                      "modality": ["video"] * n, "channel": ["visual"] * n,
                      "start_s": [float(i % per_item) for i in range(n)]})
    with col._lock, col._store.writer() as store:
        keys = store.allocate_keys(n)
        store.commit([Batch(table.add_column(0, "key", pa.array(keys)), vecs)],
                     model={"spec": None, "dim": vecs.shape[1]}, dim=vecs.shape[1])
        col._maintain_index(store)
    return col


def baseline(col: mmsearch.Collection, q: np.ndarray, k: int) -> list:
    snap = col.snapshot()
    fetch = k
    while True:
        _, rows = snap.index.search(q[None, :], fetch)
        ids = snap.table.column("id").take(pa.array(rows[0])).to_pylist()
        first: dict[str, int] = {}
        for r, i in zip(rows[0], ids, strict=True):
            first.setdefault(i, int(r))
        if len(first) >= k or fetch >= len(snap):
            return snap.records(np.array(list(first.values())[:k]))
        fetch *= 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    vecs = clustered_vectors(rng, args.rows, 512, 200, 0.6)
    queries = vecs[rng.integers(0, args.rows, args.repeats)]
    print(f"load average at the start: {load_average()}")
    print("| store | rows | baseline ms | planner ms | planner / baseline |")
    print("|---|---|---|---|---|")
    for label, per_item in (("photos", 1), ("video moments (10/item)", 10)):
        with tempfile.TemporaryDirectory() as tmp:
            col = build(Path(tmp) / "s", vecs, per_item)
            col.search(vector=queries[0], k=args.k)  # warm: snapshot, layout, FAISS
            baseline(col, queries[0], args.k)
            b, p = interleaved_ms([lambda q, c=col: baseline(c, q, args.k),
                                   lambda q, c=col: c.search(vector=q, k=args.k)], queries)
            print(f"| {label} | {args.rows} | {b:.2f} | {p:.2f} | {p / b:.2f}x |", flush=True)
            col.close()
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
