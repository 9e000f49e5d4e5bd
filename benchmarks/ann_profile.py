"""Where the batch time of the IVF-PQ index goes, and recall against the rerank pool.

Builds (or reuses) a store of the benchmark's synthetic vectors, then times the stages of
`IVFPQIndex.search` on one batch of queries: the fast-scan PQ search for candidates, the
key → row lookup, and the exact re-scoring (dot products with the memory-mapped full
vectors + top-k). Also reports recall@10 for several candidate pool sizes (rerank factors)
and nprobe values, so the defaults can be chosen from data.

    PYTHONPATH=. python benchmarks/ann_profile.py --n 1000000 --workdir /tmp/annbench
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before FAISS loads: shared cores

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
import ann

import mmsearch
from benchmarks._harness import median_s
from mmsearch.index.ivfpq import IVFPQIndex


def open_store(n: int, workdir: Path, data: np.ndarray) -> mmsearch.Collection:
    """The benchmark store of n rows, written and indexed on first use."""
    store = workdir / f"profile-store-{n}"
    done = workdir / f"profile-store-{n}.done"
    if not done.exists():
        ids = pa.array(np.char.add("v", np.arange(n).astype(str)))
        with mmsearch.open(store, index_params={"threshold": 10**12}) as col:
            for lo in range(0, n, 250_000):
                hi = min(n, lo + 250_000)
                vec = pa.FixedSizeListArray.from_arrays(pa.array(data[lo:hi].reshape(-1)),
                                                        ann.DIM)
                col.upsert(pa.table({"id": ids[lo:hi], "bucket": np.arange(lo, hi) % 100,
                                     "vector": vec}))
        with mmsearch.open(store) as col:
            col.rebuild_index()
        done.touch()
    return mmsearch.open(store)


def numpy_rescore(index: IVFPQIndex, q: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """The previous re-scoring, for comparison: copy the rows out, then one batched matmul."""
    vecs = index.vectors.take(np.maximum(cand, 0).reshape(-1)).reshape(*cand.shape, -1)
    return np.matmul(vecs, q[:, :, None])[..., 0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--data-n", type=int, default=1_000_000,
                   help="size of the cached data set whose first n rows are used")
    p.add_argument("--queries", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reranks", type=int, nargs="+", default=[5, 10, 20])
    p.add_argument("--nprobes", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds per rerank value for the speed-up over flat (0: skip)")
    p.add_argument("--single", type=int, default=300)
    p.add_argument("--latency-rounds", type=int, default=0,
                   help="rounds of 1,000 single queries timed at the defaults")
    p.add_argument("--filter-shares", type=float, nargs="*", default=[],
                   help="also time both filter plans at these selectivities")
    p.add_argument("--filtered", type=int, default=100)
    p.add_argument("--flat-single", type=int, default=10)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/mmsearch-ann-bench"))
    args = p.parse_args()
    faiss.omp_set_num_threads(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    # the first n rows of the benchmark's cached data (as `ann.py --sizes n N` uses)
    data = ann.cached_data(args.workdir, max(args.n, args.data_n))[: args.n]
    queries = ann.make_data(args.queries, 2)
    _, truth = faiss.knn(queries, data, ann.K, metric=faiss.METRIC_INNER_PRODUCT)
    col = open_store(args.n, args.workdir, data)
    index = col.snapshot().index
    assert isinstance(index, IVFPQIndex)
    print(f"index: {index.describe()}")
    k = ann.K
    for nprobe in args.nprobes:
        for rerank in args.reranks:
            n_cand = max(k, 10) * rerank
            keys = index.ann.search(queries, n_cand, nprobe)
            t_pq = median_s(lambda: index.ann.search(queries, n_cand, nprobe), args.repeat)[0]  # noqa: B023
            cand = index.keymap.rows_of(keys)
            t_map = median_s(lambda: index.keymap.rows_of(keys), args.repeat)[0]  # noqa: B023
            t_re = median_s(lambda: index._rescore(queries, cand, k), args.repeat)[0]  # noqa: B023
            found = index._rescore(queries, cand, k)[1]
            t_np = median_s(lambda: numpy_rescore(index, queries, cand), args.repeat)[0]  # noqa: B023
            total = t_pq + t_map + t_re
            print(f"nprobe {nprobe:3d} rerank {rerank:3d} ({n_cand} cand): "
                  f"recall {ann.recall_at_k(found, truth):.4f}  batch {total * 1e3:7.1f} ms = "
                  f"pq {t_pq * 1e3:6.1f} + keymap {t_map * 1e3:5.1f} + rescore "
                  f"{t_re * 1e3:6.1f} (numpy gather+matmul: {t_np * 1e3:6.1f})  -> "
                  f"{len(queries) / total:7.0f} QPS", flush=True)
    for rnd in range(args.latency_rounds):
        lat = []
        for x in ann.make_data(1000, 2):
            t = time.perf_counter()
            index.search(x[None, :], k)
            lat.append((time.perf_counter() - t) * 1e3)
        print(f"single-query latency at the defaults, round {rnd}: p50 "
              f"{np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms "
              f"(1,000 queries)", flush=True)
    if args.filter_shares:
        ann.filter_sweep(index, data, queries, args)
    if args.rounds:
        for rerank in args.reranks:
            index.rerank = rerank
            found = index.search(queries, k)[1]
            speed = ann.speedup_vs_flat(index, data, queries, args)
            print(f"defaults but rerank {rerank}: recall {ann.recall_at_k(found, truth):.4f}, "
                  f"speed-up over flat {speed}", flush=True)
    col.close()


if __name__ == "__main__":
    main()
