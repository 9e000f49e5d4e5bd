"""ANN benchmark: exact FAISS flat vs mmsearch's IVF-PQ (several nprobe) vs usearch (HNSW).

Synthetic 512-d data: a Gaussian mixture (2,000 centres; each cluster has its own
32-dimensional low-rank spread plus isotropic noise), unit-normalised. Queries are fresh
draws from the same mixture, never database rows. Everything runs in one process, one
after the other, so machine load hits all sides alike.

    PYTHONPATH=. python benchmarks/ann.py --sizes 100000 1000000

Reports per size: build time, recall@10 against exact search, QPS at batch 1 and batch
1024, p50/p99 single-query latency, bytes per vector, filtered recall at 1% / 10% / 50%
selectivity, store open time. Writes a JSON file and a recall-vs-QPS plot.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before FAISS loads: shared cores

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

import mmsearch
from benchmarks._harness import mixture_vectors
from mmsearch.index.ivfpq import IVFPQIndex

DIM = 512
CENTERS = 2000
RANK = 32
K = 10


def make_data(n: int, seed: int) -> np.ndarray:
    """n unit vectors from the fixed mixture (centres and cluster shapes from seed 0)."""
    return mixture_vectors(n, seed, DIM, CENTERS, RANK)


def cached_data(workdir: Path, n: int) -> np.ndarray:
    path = workdir / f"data-{n}.npy"
    if not path.exists():
        t = time.perf_counter()
        np.save(path, make_data(n, 1))
        print(f"  generated {n} vectors in {time.perf_counter() - t:.0f} s", flush=True)
    return np.load(path, mmap_mode="r")


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / len(t)
                          for f, t in zip(found, truth, strict=True)]))


def timed_single(fn, queries: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Run fn on one query at a time; returns results and latency stats (ms)."""
    lat, out = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(fn(q[None, :]))
        lat.append((time.perf_counter() - t) * 1e3)
    lat = np.array(lat)
    return np.concatenate(out), {"qps_b1": round(1e3 / lat.mean(), 1),
                                 "p50_ms": round(float(np.percentile(lat, 50)), 3),
                                 "p99_ms": round(float(np.percentile(lat, 99)), 3)}


def timed_batch(fn, queries: np.ndarray) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    out = fn(queries)
    return out, round(len(queries) / (time.perf_counter() - t), 1)


def interleaved(base, fast, rounds: int, base_per: int = 1, fast_per: int = 1) -> dict:
    """How many times faster `fast` is than `base`, robust to machine load.

    Times the two alternately in `rounds` rounds (the first to run alternates too), so a
    burst of load from other processes hits both sides alike; each round gives one ratio of
    per-query times (`base` runs `base_per` queries, `fast` runs `fast_per`). Returns the
    median ratio with its spread (min, max, and every round's value).
    """
    ratios, tb, tf = [], [], []
    for i in range(rounds):
        pair = [base, fast] if i % 2 == 0 else [fast, base]
        took = {}
        for fn in pair:
            t = time.perf_counter()
            fn()
            took[fn] = time.perf_counter() - t
        tb.append(took[base] / base_per)
        tf.append(took[fast] / fast_per)
        ratios.append(tb[-1] / tf[-1])
    return {"ratio_median": round(statistics.median(ratios), 1),
            "ratio_min": round(min(ratios), 1), "ratio_max": round(max(ratios), 1),
            "ratios": [round(r, 1) for r in ratios],
            "base_qps": round(1 / statistics.median(tb), 1),
            "fast_qps": round(1 / statistics.median(tf), 1)}


def speedup_vs_flat(index: IVFPQIndex, data: np.ndarray, queries: np.ndarray,
                    args: argparse.Namespace) -> dict:
    """Interleaved QPS ratios of the index (current settings) over exact flat search."""

    def flat_batch() -> None:
        faiss.knn(queries, data, K, metric=faiss.METRIC_INNER_PRODUCT)

    def ours_batch() -> None:
        index.search(queries, K)

    def flat_single() -> None:
        for q in queries[:args.flat_single]:
            faiss.knn(q[None, :], data, K, metric=faiss.METRIC_INNER_PRODUCT)

    def ours_single() -> None:
        for q in queries[:args.single]:
            index.search(q[None, :], K)

    return {"batch": interleaved(flat_batch, ours_batch, args.rounds,
                                 len(queries), len(queries)),
            "single": interleaved(flat_single, ours_single, args.rounds,
                                  args.flat_single, args.single)}


def filter_sweep(index: IVFPQIndex, data: np.ndarray, queries: np.ndarray,
                 args: argparse.Namespace) -> list[dict]:
    """Filtered-search latency of both plans at several selectivities, to set the cutoff.

    The filter keeps every (1/s)-th row (spread over all clusters, like `bucket < s`). For
    each query both plans run back to back (exact among the rows; IVF-PQ + id bitmap), so
    load hits both alike. Recall is against exact search among the allowed rows.
    """
    n, nf = len(index), min(len(queries), args.filtered)
    saved, out = index.filter_exact_rows, []
    for share in args.filter_shares:
        allowed = np.arange(0, n, max(1, round(1 / share)))
        _, truth = faiss.knn(queries[:nf], np.ascontiguousarray(data[allowed]), K,
                             metric=faiss.METRIC_INNER_PRODUCT)
        truth = allowed[truth]
        plans = {"exact": 1 << 62, "bitmap": 0}
        lat: dict[str, list[float]] = {p: [] for p in plans}
        found: dict[str, list[np.ndarray]] = {p: [] for p in plans}
        for i, q in enumerate(queries[:nf]):
            for plan in (plans if i % 2 == 0 else reversed(plans)):
                index.filter_exact_rows = plans[plan]
                t = time.perf_counter()
                found[plan].append(index.search(q[None, :], K, allowed)[1])
                lat[plan].append((time.perf_counter() - t) * 1e3)
        row = {"share": share, "rows": len(allowed)}
        for plan in plans:
            row[plan] = {"recall": round(recall_at_k(np.concatenate(found[plan]), truth), 4),
                         "p50_ms": round(float(np.percentile(lat[plan], 50)), 2),
                         "p99_ms": round(float(np.percentile(lat[plan], 99)), 2)}
        out.append(row)
        print(f"  filter plans {row}", flush=True)
    index.filter_exact_rows = saved
    return out


def bench_size(n: int, args: argparse.Namespace, workdir: Path) -> dict:
    print(f"== {n} vectors x {DIM}", flush=True)
    data = cached_data(workdir, max(args.sizes))[:n]
    queries = make_data(args.queries, 2)
    res: dict = {"n": n, "dim": DIM, "queries": len(queries)}

    # -- exact flat (FAISS brute force over the same vectors): ground truth and baseline
    t = time.perf_counter()
    _, truth = faiss.knn(queries, data, K, metric=faiss.METRIC_INNER_PRODUCT)
    flat_b = round(len(queries) / (time.perf_counter() - t), 1)
    n1 = args.flat_single

    def flat(q: np.ndarray) -> np.ndarray:
        return faiss.knn(q, data, K, metric=faiss.METRIC_INNER_PRODUCT)[1]

    _, single = timed_single(flat, queries[:n1])
    res["flat"] = {"recall": 1.0, "qps_b1024": flat_b, **single, "bytes_per_vector": 4 * DIM,
                   "build_s": 0.0}
    print(f"  flat: {res['flat']}", flush=True)

    # -- mmsearch: a real store, index trained by rebuild_index, reopened from disk
    store = workdir / f"store-{n}"
    shutil.rmtree(store, ignore_errors=True)
    ids = pa.array(np.char.add("v", np.arange(n).astype(str)))
    t = time.perf_counter()
    with mmsearch.open(store, index_params={"threshold": 10**12}) as col:  # exact: write only
        for lo in range(0, n, 250_000):
            hi = min(n, lo + 250_000)
            vec = pa.FixedSizeListArray.from_arrays(pa.array(data[lo:hi].reshape(-1)), DIM)
            col.upsert(pa.table({"id": ids[lo:hi], "bucket": np.arange(lo, hi) % 100,
                                 "vector": vec}))
    res["store_write_s"] = round(time.perf_counter() - t, 1)
    small = {} if n >= 50_000 else {"threshold": 1000}  # defaults, except for smoke runs
    t = time.perf_counter()
    with mmsearch.open(store, index_params=small) as col:
        built = col.rebuild_index()
    res["build_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    col = mmsearch.open(store, index_params=small)
    snap = col.snapshot()
    index = snap.index
    assert isinstance(index, IVFPQIndex)
    res["open_s"] = round(time.perf_counter() - t, 2)
    res["index"] = built
    res["train_s"] = index.ann.meta["train_seconds"]
    default_nprobe = index.nprobe
    print(f"  store written in {res['store_write_s']} s, index built in {res['build_s']} s "
          f"(train {index.ann.meta['train_seconds']} s), reopened in {res['open_s']} s: "
          f"{built}", flush=True)
    rows = np.arange(n)  # one segment, keys 0..n-1: row position = data row
    assert (index.keymap.row_keys == rows).all()
    ram = index.ann.ram_bytes() + index.keymap.nbytes
    res["ours"] = []
    for nprobe in args.nprobes:
        index.nprobe = nprobe
        found_b, qps_b = timed_batch(lambda q: index.search(q, K)[1], queries)
        found, single = timed_single(lambda q: index.search(q, K)[1], queries[:args.single])
        r = {"nprobe": nprobe, "default": nprobe == default_nprobe,
             "recall": round(recall_at_k(found_b, truth), 4), "qps_b1024": qps_b, **single,
             "bytes_per_vector": round(ram / n, 1), "mapped_bytes_per_vector": 4 * DIM}
        res["ours"].append(r)
        print(f"  ivfpq {r}", flush=True)
    index.nprobe = default_nprobe
    res["speedup"] = speedup_vs_flat(index, data, queries, args)
    print(f"  speedup over flat at the defaults (interleaved, {args.rounds} rounds): "
          f"{res['speedup']}", flush=True)

    # end to end through the public API (DuckDB row lookup and Result objects included)
    _, api = timed_single(lambda q: np.array([[0]]) if col.search(vector=q[0], k=K) else None,
                          queries[:args.single])
    res["api_default"] = api

    if args.filter_shares:
        res["filter_plans"] = filter_sweep(index, data, queries, args)

    # -- filtered search: bucket = i % 100, so "bucket < s" matches s% of the rows
    res["filtered"] = []
    for pct in (1, 10, 50):
        t = time.perf_counter()
        allowed = snap.matching_rows("bucket < ?", [pct])
        sql_ms = (time.perf_counter() - t) * 1e3
        sub = np.ascontiguousarray(data[allowed])
        nf = min(len(queries), args.filtered)
        _, ftruth = faiss.knn(queries[:nf], sub, K, metric=faiss.METRIC_INNER_PRODUCT)
        ftruth = allowed[ftruth]
        found, single = timed_single(lambda q: index.search(q, K, allowed)[1],  # noqa: B023
                                     queries[:nf])
        plan = "exact among rows" if len(allowed) <= max(index.filter_exact_rows,
                                                          10 * index.rerank) else "ivfpq+bitmap"
        r = {"selectivity_pct": pct, "rows": len(allowed), "plan": plan,
             "recall": round(recall_at_k(found, ftruth), 4),
             "full_k": bool(((found >= 0).sum(axis=1) == K).all()), **single,
             "sql_ms": round(sql_ms, 1)}
        res["filtered"].append(r)
        print(f"  filtered {r}", flush=True)
        del sub
    col.close()

    # -- usearch (HNSW), the library a user might pick instead
    if not args.no_usearch and n <= args.usearch_max_n:
        from usearch.index import Index

        uidx = Index(ndim=DIM, metric="ip", dtype=args.usearch_dtype, connectivity=16,
                     expansion_add=args.usearch_ef_add)
        t = time.perf_counter()
        for lo in range(0, n, 100_000):
            hi = min(n, lo + 100_000)
            uidx.add(np.arange(lo, hi), np.ascontiguousarray(data[lo:hi]), threads=args.threads)
        res["usearch_build_s"] = round(time.perf_counter() - t, 1)
        res["usearch"] = []
        for ef in args.usearch_ef:
            uidx.expansion_search = ef

            def us(q: np.ndarray) -> np.ndarray:
                m = uidx.search(q, K, threads=args.threads)
                return np.asarray(m.keys).reshape(len(q), K).astype(np.int64)

            found_b, qps_b = timed_batch(us, queries)
            _, single = timed_single(us, queries[:args.single])
            r = {"ef": ef, "recall": round(recall_at_k(found_b, truth), 4), "qps_b1024": qps_b,
                 **single, "bytes_per_vector": round(uidx.memory_usage / n, 1),
                 "build_s": res["usearch_build_s"], "dtype": str(uidx.dtype)}
            res["usearch"].append(r)
            print(f"  usearch {r}", flush=True)
        del uidx
    shutil.rmtree(store, ignore_errors=True)
    return res


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 3.8), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        ours = res["ours"]
        ax.plot([r["qps_b1"] for r in ours], [r["recall"] for r in ours], "o-",
                label="mmsearch IVF-PQ + rerank (nprobe)")
        for r in ours:
            ax.annotate(str(r["nprobe"]), (r["qps_b1"], r["recall"]), fontsize=7,
                        xytext=(3, -8), textcoords="offset points")
        if res.get("usearch"):
            us = res["usearch"]
            ax.plot([r["qps_b1"] for r in us], [r["recall"] for r in us], "s--",
                    label=f"usearch HNSW {us[0]['dtype'].split('.')[-1].lower()} (ef)")
            for r in us:
                ax.annotate(str(r["ef"]), (r["qps_b1"], r["recall"]), fontsize=7,
                            xytext=(3, 4), textcoords="offset points")
        ax.plot([res["flat"]["qps_b1"]], [1.0], "k*", markersize=10, label="FAISS flat (exact)")
        ax.set_xscale("log")
        ax.set_xlabel("queries/s, batch 1 (2 shared CPU cores)")
        ax.set_ylabel("recall@10")
        ax.set_title(f"{res['n']:,} x {res['dim']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--queries", type=int, default=1024, help="batch size and recall queries")
    p.add_argument("--single", type=int, default=300, help="queries timed one at a time")
    p.add_argument("--flat-single", type=int, default=20)
    p.add_argument("--filtered", type=int, default=100)
    p.add_argument("--filter-shares", type=float, nargs="*",
                   default=[0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2],
                   help="selectivities at which both filter plans are timed")
    p.add_argument("--rounds", type=int, default=5,
                   help="interleaved flat/index timing rounds for the speed-up ratios")
    p.add_argument("--nprobes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-usearch", action="store_true")
    p.add_argument("--usearch-max-n", type=int, default=200_000,
                   help="skip usearch above this size (its 1M build takes >10 min here)")
    p.add_argument("--usearch-dtype", default="f16")
    p.add_argument("--usearch-ef-add", type=int, default=64)
    p.add_argument("--usearch-ef", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/mmsearch-ann-bench"))
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "ann_results.json")
    p.add_argument("--plot", type=Path, default=Path(__file__).parent / "ann_recall_qps.png")
    args = p.parse_args()
    faiss.omp_set_num_threads(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = [bench_size(n, args, args.workdir) for n in args.sizes]
    meta = {"command": "python " + " ".join(sys.argv), "cpus": os.cpu_count(),
            "load_avg_end": os.getloadavg(), "seconds": round(time.perf_counter() - started),
            "faiss": faiss.__version__, "results": results}
    args.out.write_text(json.dumps(meta, indent=1, default=str))
    plot(results, args.plot)
    print(f"done in {meta['seconds']} s; wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
