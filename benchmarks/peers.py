"""mmsearch against its peers on the same vectors, in one process, interleaved rounds.

    PYTHONPATH=. python benchmarks/peers.py --n 1000000 --queries 1000 --rounds 3 \\
        --workdir /tmp/peers            # + LanceDB with `pip install -e ".[bench]"`

Methods (same data, same fresh queries, k = 10):

- `mmsearch`: `col.search(vector=q, k=10)` through the public API of a store written with
  `upsert` (index trained by the store; its measured nprobe / re-score depth); batch:
  `col.search_batch(vectors=Q, k=10)`. Its first search is timed from `mmsearch.open`
  (library imported before) in the benchmark's process, with the store's default
  checksum verification of files changed since they were last verified (`STORE/.verified`).
  A reused store written by an earlier version lacks the Arrow copies of its metadata:
  `benchmarks/open_cost.py STORE --upgrade --runs 1` adds them.
- `mmsearch-index`: the snapshot's index object alone (`snap.index.search`).
- `faiss`: raw FAISS of the structure mmsearch picked (`IVF{nlist},PQ{m}x4fs` inside
  `IndexRefineFlat`, the same nprobe and re-score depth).
- `flat`: exact search, FAISS `knn` over the vectors (the ground truth).
- `lancedb`: LanceDB IVF_PQ (same partitions, `num_sub_vectors` = m, nprobes = mmsearch's,
  refine_factor = mmsearch's re-score depth), when installed.

Filtered runs ask for `bucket = 7` (1 % of rows) and `bucket < 10` (10 %) where the peer
supports it (mmsearch `filters=`, LanceDB prefilter `where`); raw FAISS gets an
`IDSelectorBatch` of the allowed ids. Recall is against exact search among the allowed rows.

`--no-flat` leaves the exact flat method out (its unfiltered single query reads every
vector: ~2 s at 1M; the ground truth stays exact) and `--cache-faiss` keeps raw FAISS's
index in the workdir for the next run (its build time is then the load time). The run
ends with the issue's goals as ratios (`goals` in the JSON).

Every round runs each method on its own slice of the queries, the order of the methods
rotating between rounds, so load on the shared machine hits all alike. Reported per method:
recall@10, p50 / p99 single-query latency, QPS (1 / mean latency), batch QPS where the peer
has a batch call, build time, bytes on disk, and the process's anonymous RSS growth while
loading it. Only each method's own call is timed: turning its answer into integer ids for
the recall (`int(r.id)` of each `Result`, a table's id column, a row → id map) happens after
the clock stopped (before the fifth session it was inside: ~2 µs a single query and
~1.6 ms a batch of 1,024 of the benchmark's own work counted against mmsearch). Writes
`--out` (JSON) and a plot next to it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before FAISS loads: shared cores

import argparse
import contextlib
import importlib
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mmsearch
from benchmarks import vector_sets

K = 10
FILTERS = {"none": None, "1%": ("bucket", "eq", 7), "10%": ("bucket", "lt", 10)}
HERE = Path(__file__).resolve().parent


def rss_anon() -> int:
    """Anonymous resident memory of this process (bytes; file-backed maps excluded)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def data(workdir: Path, n: int, dim: int, nq: int) -> tuple[np.ndarray, np.ndarray]:
    """Database vectors (cached .npy, memory-mapped) and fresh queries of the mixture."""
    path = workdir / f"mixture-{n}x{dim}.npy"
    if not path.exists():
        np.save(path, vector_sets.mixture(n, dim=dim, seed=1))
    return np.load(path, mmap_mode="r"), vector_sets.mixture(nq, dim=dim, seed=2)


def allowed_rows(kind: tuple[str, str, int] | None, n: int) -> np.ndarray | None:
    if kind is None:
        return None
    bucket = np.arange(n) % 100
    _, op, v = kind
    return np.flatnonzero(bucket == v if op == "eq" else bucket < v)


def ground_truth(x: np.ndarray, q: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    if rows is None:
        return faiss.knn(q, x, K, metric=faiss.METRIC_INNER_PRODUCT)[1]
    sub = np.ascontiguousarray(x[rows])
    return rows[faiss.knn(q, sub, K, metric=faiss.METRIC_INNER_PRODUCT)[1]]


# -- the methods ----------------------------------------------------------------------------
class Method:
    """A peer: `build()` once, then `search(q, filt)` one query at a time, `batch(Q)` for
    many. Both return the call's own answer (results, a table, ids); `ids` / `batch_ids`
    turn it into ids ((k,) / (len(Q), k)) after the clock stopped."""

    name = ""
    batch: Callable[[np.ndarray], Any] | None = None
    filtered = True
    single = True  # False: measured in batch only

    def search(self, q: np.ndarray, filt: tuple[str, str, int] | None) -> Any:
        raise NotImplementedError

    def ids(self, answer: Any) -> np.ndarray:
        return np.asarray(answer)

    def batch_ids(self, answer: Any) -> np.ndarray:
        return np.asarray(answer)


class Mmsearch(Method):
    name = "mmsearch"

    def __init__(self, root: Path, x: np.ndarray, params: dict) -> None:
        self.path = root / "mmsearch"
        self.params = params
        self.x = x
        self.build_s = 0.0
        if not (self.path / "manifest.json").exists():
            shutil.rmtree(self.path, ignore_errors=True)
            t = time.perf_counter()
            with mmsearch.open(self.path, index_params=params) as col:
                step = 200_000
                for lo in range(0, len(x), step):
                    v = np.ascontiguousarray(x[lo:lo + step])
                    ids = np.arange(lo, lo + len(v))
                    col.upsert(pa.table({
                        "id": pa.array([str(i) for i in ids]),
                        "bucket": pa.array(ids % 100, pa.int64()),
                        "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)),
                                                                    x.shape[1])}))
            self.build_s = time.perf_counter() - t
        importlib.import_module("mmsearch.collection")  # the library's import is not the open
        before = rss_anon()
        t = time.perf_counter()
        self.col = mmsearch.open(self.path, index_params=params)
        self.col.search(vector=x[0], k=K)
        self.first_search_s = time.perf_counter() - t
        self.rss = rss_anon() - before
        self.snap = self.col.snapshot()
        self.batch = lambda qs: self.col.search_batch(vectors=qs, k=K)
        self.info = self.col.info()["index_params"]
        self.disk = disk_bytes(self.path)

    def search(self, q, filt):
        filters = None if filt is None else {filt[0]: {filt[1]: filt[2]}}
        return self.col.search(vector=q, k=K, filters=filters)

    def ids(self, answer):
        return np.array([int(r.id) for r in answer])

    def batch_ids(self, answer):
        return np.array([[int(r.id) for r in hits] for hits in answer])


class MmsearchTable(Method):
    """`search_batch(..., as_table=True)`: the same results as one Arrow table."""

    name = "mmsearch-table"
    single = False

    def __init__(self, m: Mmsearch) -> None:
        self.batch = lambda qs: m.col.search_batch(vectors=qs, k=K, as_table=True)

    def batch_ids(self, answer):
        ids = answer.column("id").to_numpy(zero_copy_only=False).astype(np.int64)
        return ids.reshape(-1, K)


class MmsearchIndex(Method):
    name = "mmsearch-index"
    filtered = False

    def __init__(self, m: Mmsearch) -> None:
        self.m = m
        self.keys = m.snap.table.column("id").to_numpy(zero_copy_only=False).astype(np.int64)
        self.batch = lambda qs: m.snap.index.search(qs, K)[1]

    def search(self, q, filt):
        return self.m.snap.index.search(q[None], K)[1][0]

    def ids(self, answer):
        return self.keys[answer]

    batch_ids = ids


class Faiss(Method):
    name = "faiss"

    def __init__(self, x: np.ndarray, info: dict, cache: Path | None = None) -> None:
        t = time.perf_counter()
        before = rss_anon()
        dim = x.shape[1]
        fs = "fs" if info["fast_scan"] else ""
        spec = f"IVF{info['nlist']},PQ{info['m']}x{info['nbits']}{fs}"
        file = None if cache is None else cache / f"faiss-{spec.replace(',', '-')}.index"
        if file is not None and file.exists():  # built by an earlier run (--cache-faiss)
            self.index = faiss.read_index(str(file))
        else:
            base = faiss.index_factory(dim, spec, faiss.METRIC_L2)
            sample = np.ascontiguousarray(x[np.sort(np.random.default_rng(0).choice(
                len(x), min(len(x), info["train_sample"] or len(x)), replace=False))])
            faiss.extract_index_ivf(base).cp.niter = 10
            base.train(sample)
            self.index = faiss.IndexRefineFlat(base)
            for lo in range(0, len(x), 100_000):
                self.index.add(np.ascontiguousarray(x[lo:lo + 100_000]))
            if file is not None:
                faiss.write_index(self.index, str(file))
        self.build_s = time.perf_counter() - t
        self.rss = rss_anon() - before
        self.nprobe = int(info["nprobe"])
        self.params = faiss.IndexRefineSearchParameters(
            k_factor=float(info["rerank"]), base_index_params=faiss.SearchParametersIVF(
                nprobe=self.nprobe))
        self.spec = f"{spec} + RefineFlat, nprobe {info['nprobe']}, k_factor {info['rerank']}"
        self.batch = lambda qs: self.index.search(qs, K, params=self.params)[1]
        self.disk = (file.stat().st_size if file is not None  # (serializing: a 2nd copy)
                     else len(faiss.serialize_index(self.index)))
        self.selectors: dict = {}

    def search(self, q, filt):
        params = self.params
        if filt is not None:
            params = self.selectors.get(filt)
            if params is None:
                rows = allowed_rows(filt, self.index.ntotal)
                sel = faiss.IDSelectorBatch(rows.astype(np.int64))
                share = len(rows) / self.index.ntotal
                params = faiss.IndexRefineSearchParameters(
                    k_factor=self.params.k_factor, sel=sel,
                    base_index_params=faiss.SearchParametersIVF(
                        nprobe=int(self.nprobe / np.sqrt(share)),
                        sel=sel))
                params.keep = (sel, rows)  # type: ignore[attr-defined]
                self.selectors[filt] = params
        return self.index.search(q[None], K, params=params)[1][0]


class Flat(Method):
    name = "flat"

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.sub: dict = {}
        self.batch = lambda qs: faiss.knn(qs, x, K, metric=faiss.METRIC_INNER_PRODUCT)[1]

    def search(self, q, filt):
        if filt is None:
            return faiss.knn(q[None], self.x, K, metric=faiss.METRIC_INNER_PRODUCT)[1][0]
        if filt not in self.sub:
            rows = allowed_rows(filt, len(self.x))
            self.sub[filt] = (rows, np.ascontiguousarray(self.x[rows]))
        rows, sub = self.sub[filt]
        return rows[faiss.knn(q[None], sub, K, metric=faiss.METRIC_INNER_PRODUCT)[1][0]]


class Lance(Method):
    name = "lancedb"

    def __init__(self, root: Path, x: np.ndarray, info: dict) -> None:
        import lancedb
        from lancedb.index import BTree, IvfPq

        self.path = root / "lancedb"
        self.build_s = 0.0
        if not (self.path / "items.lance").exists():
            shutil.rmtree(self.path, ignore_errors=True)
            t = time.perf_counter()
            db = lancedb.connect(str(self.path))
            dim = x.shape[1]

            def batches():
                for lo in range(0, len(x), 100_000):
                    v = np.ascontiguousarray(x[lo:lo + 100_000])
                    ids = np.arange(lo, lo + len(v))
                    yield pa.record_batch({
                        "id": pa.array(ids, pa.int64()), "bucket": pa.array(ids % 100, pa.int64()),
                        "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), dim)})

            schema = pa.schema({"id": pa.int64(), "bucket": pa.int64(),
                                "vector": pa.list_(pa.float32(), dim)})
            table = db.create_table("items", batches(), schema=schema)
            table.create_index("vector", config=IvfPq(
                distance_type="dot", num_partitions=info["nlist"], num_sub_vectors=info["m"],
                max_iterations=10))
            table.create_index("bucket", config=BTree())
            self.build_s = time.perf_counter() - t
        before = rss_anon()
        self.table = lancedb.connect(str(self.path)).open_table("items")
        self.nprobe, self.refine = info["nprobe"], info["rerank"]
        self.search(x[0], None)
        self.rss = rss_anon() - before
        self.disk = disk_bytes(self.path)
        self.spec = (f"IVF_PQ {info['nlist']} partitions, {info['m']} sub-vectors x 8 bits, "
                     f"nprobes {self.nprobe}, refine_factor {self.refine}, prefilter")

    def search(self, q, filt):
        s = self.table.search(q).distance_type("dot").nprobes(self.nprobe).refine_factor(
            self.refine).limit(K).select(["id", "_distance"])
        if filt is not None:
            s = s.where(f"bucket {'=' if filt[1] == 'eq' else '<'} {filt[2]}", prefilter=True)
        return s.to_arrow()

    def ids(self, answer):
        return answer.column("id").to_numpy()


# -- measuring ----------------------------------------------------------------------------
def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K
                          for f, t in zip(found, truth, strict=True)]))


def run(methods: list[Method], queries: np.ndarray, truth: dict, rounds: int) -> dict:
    """Interleaved rounds; per (method, filter): latencies and answers of every query."""
    out: dict = {}
    slices = np.array_split(np.arange(len(queries)), rounds)
    for r in range(rounds):
        singles = [m for m in methods if m.single]
        order = singles[r % len(singles):] + singles[:r % len(singles)]
        for m in order:
            for fname, filt in FILTERS.items():
                if filt is not None and not m.filtered:
                    continue
                rec = out.setdefault((m.name, fname), {"lat": [], "found": [], "idx": []})
                m.search(queries[slices[r][0]], filt)  # warm (caches, first-call costs)
                for i in slices[r]:
                    t = time.perf_counter()
                    answer = m.search(queries[i], filt)
                    rec["lat"].append(time.perf_counter() - t)
                    rec["found"].append(m.ids(answer))
                    rec["idx"].append(i)
        print(f"  round {r + 1}/{rounds} done, load {load_avg()}", flush=True)
    rows = []
    for (name, fname), rec in out.items():
        lat = np.array(rec["lat"]) * 1000
        t = truth[fname][rec["idx"]]
        rows.append({"method": name, "filter": fname,
                     "recall_at_10": round(recall(rec["found"], t), 4),
                     "always_k": bool(all(len(f) == K for f in rec["found"])),
                     "p50_ms": round(float(np.percentile(lat, 50)), 3),
                     "p99_ms": round(float(np.percentile(lat, 99)), 3),
                     "qps": round(1000 / float(lat.mean()), 1), "queries": len(lat)})
    return {"rows": rows}


def batch_qps(methods: list[Method], queries: np.ndarray, truth: np.ndarray,
              rounds: int) -> list[dict]:
    """Batch calls (all queries at once), interleaved rounds after one untimed call per
    method (first-call costs, as the single queries' warm-up); median QPS per method."""
    timed: dict[str, list[float]] = {}
    found: dict[str, np.ndarray] = {}
    with_batch = [m for m in methods if m.batch is not None]
    for m in with_batch:
        m.batch(queries)
    for r in range(rounds):
        for m in with_batch[r % len(with_batch):] + with_batch[:r % len(with_batch)]:
            t = time.perf_counter()
            answer = m.batch(queries)
            timed.setdefault(m.name, []).append(len(queries) / (time.perf_counter() - t))
            found[m.name] = m.batch_ids(answer)
            del answer  # (freed here, not inside the next timed call)
    return [{"method": name, "batch": len(queries), "qps": round(statistics.median(v), 1),
             "rounds": [round(x, 1) for x in v],
             "recall_at_10": round(recall(list(found[name]), truth), 4)}
            for name, v in timed.items()]


def plot(result: dict, path: Path) -> None:
    """Recall against p50 latency per filter (one colour per method throughout), and the
    batch QPS per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = sorted({row["method"] for row in result["single"]["rows"]}
                   | {row["method"] for row in result["batch"]})
    colour = {n: f"C{i}" for i, n in enumerate(names)}
    low = min(row["recall_at_10"] for row in result["single"]["rows"]) - 0.05
    fig, axes = plt.subplots(1, 4, figsize=(17, 4),
                             gridspec_kw={"width_ratios": [1, 1, 1, 1.2]})
    for ax, fname in zip(axes, FILTERS, strict=False):
        for row in result["single"]["rows"]:
            if row["filter"] == fname:
                ax.scatter(row["p50_ms"], row["recall_at_10"], s=50, c=colour[row["method"]],
                           label=row["method"])
        ax.set_xlim(left=0, right=ax.get_xlim()[1] * 1.15)
        ax.set_ylim(low, 1.005)
        ax.set_xlabel("p50 latency, ms")
        ax.set_title(f"one query, filter: {fname}")
        ax.set_ylabel("recall@10")
        ax.grid(alpha=0.3)
    batch = sorted(result["batch"], key=lambda r: r["qps"])
    bars = axes[3]
    bars.barh([r["method"] for r in batch], [r["qps"] for r in batch],
              color=[colour[r["method"]] for r in batch])
    for i, r in enumerate(batch):
        bars.annotate(f"{r['qps']:,.0f}", (r["qps"], i), fontsize=8, xytext=(3, -3),
                      textcoords="offset points")
    bars.xaxis.set_major_formatter(lambda v, _: f"{v / 1000:.0f}k")
    bars.set_xlabel(f"queries / s, batch of {batch[0]['batch'] if batch else 0}")
    bars.set_title("batch")
    bars.margins(x=0.2)
    fig.suptitle(f"{result['n']:,} x {result['dim']}, k=10, load {result['load_end']}")
    handles = {h.get_label(): h for ax in axes[:3] for h in ax.collections}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles),
               fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--batch-rounds", type=int, default=9,
                    help="timed batch calls per method (interleaved; one call is ~50 ms)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/peers"))
    ap.add_argument("--out", type=Path, default=HERE / "peers_results.json")
    ap.add_argument("--no-lancedb", action="store_true")
    ap.add_argument("--no-flat", action="store_true",
                    help="leave out the exact flat method (ground truth is still exact): its "
                         "unfiltered single query reads every vector (~2 s each at 1M)")
    ap.add_argument("--cache-faiss", action="store_true",
                    help="keep raw FAISS's built index in the workdir and reuse it")
    ap.add_argument("--threshold", type=int, default=50_000, help="mmsearch IVF-PQ threshold")
    args = ap.parse_args(argv)
    faiss.omp_set_num_threads(min(2, os.cpu_count() or 1))
    args.workdir.mkdir(parents=True, exist_ok=True)
    root = args.workdir / f"{args.n}x{args.dim}"
    root.mkdir(exist_ok=True)
    result: dict = {"n": args.n, "dim": args.dim, "k": K, "queries": args.queries,
                    "rounds": args.rounds, "batch_rounds": args.batch_rounds,
                    "load_start": load_avg(), "cpus": os.cpu_count(),
                    "faiss": faiss.__version__}
    x, queries = data(args.workdir, args.n, args.dim, max(args.queries, args.batch))
    q_single = queries[:args.queries]
    print(f"data ready, load {load_avg()}", flush=True)
    m = Mmsearch(root, x, {"threshold": args.threshold})
    info = m.info
    print(f"mmsearch: {info.get('type')} nlist {info.get('nlist')} nprobe {info.get('nprobe')} "
          f"rerank {info.get('rerank')} recall {info.get('recall_at_10')}", flush=True)
    methods: list[Method] = [m, MmsearchTable(m), MmsearchIndex(m)] + (
        [] if args.no_flat else [Flat(x)])
    builds = {"mmsearch": {"build_s": round(m.build_s, 1), "disk_bytes": m.disk,
                           "rss_anon_bytes": m.rss, "first_search_s": round(m.first_search_s, 3),
                           "index": info}}
    if info.get("type") == "ivfpq":
        f = Faiss(x, info, root if args.cache_faiss else None)
        methods.append(f)
        builds["faiss"] = {"build_s": round(f.build_s, 1), "disk_bytes": f.disk,
                           "rss_anon_bytes": f.rss, "spec": f.spec}
    if not args.no_lancedb and info.get("type") == "ivfpq":
        try:
            lance = Lance(root, x, info)
            methods.append(lance)
            builds["lancedb"] = {"build_s": round(lance.build_s, 1), "disk_bytes": lance.disk,
                                 "rss_anon_bytes": lance.rss, "spec": lance.spec}
        except ImportError as e:
            builds["lancedb"] = {"skipped": f"not installed ({e}); pip install -e '.[bench]'"}
    print(f"built {[mm.name for mm in methods]}, load {load_avg()}", flush=True)
    truth = {fname: ground_truth(x, q_single, allowed_rows(filt, len(x)))
             for fname, filt in FILTERS.items()}
    result["builds"] = builds
    result["single"] = run(methods, q_single, truth, args.rounds)
    qb = queries[:args.batch]
    result["batch"] = batch_qps(methods, qb, ground_truth(x, qb, None), args.batch_rounds)
    result["load_end"] = load_avg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    with contextlib.suppress(ImportError):  # matplotlib: the bench extra
        plot(result, args.out.with_suffix(".png"))
    for row in result["single"]["rows"]:
        print(row)
    for row in result["batch"]:
        print(row)
    summary = goals(result)
    result["goals"] = summary
    args.out.write_text(json.dumps(result, indent=1, default=str))
    for line in summary:
        print(line)
    return result


def goals(result: dict) -> list[str]:
    """The issue's goals as ratios and times from this run's rows."""
    single = {(r["method"], r["filter"]): r for r in result["single"]["rows"]}
    batch = {r["method"]: r for r in result["batch"]}
    out = []
    api, raw = single.get(("mmsearch", "none")), single.get(("faiss", "none"))
    if api and raw:
        out.append(f"single: mmsearch p50 {api['p50_ms']} ms / raw FAISS {raw['p50_ms']} ms = "
                   f"{api['p50_ms'] / raw['p50_ms']:.2f}x (goal <= 1.5; recall "
                   f"{api['recall_at_10']} vs {raw['recall_at_10']})")
    for name, what in (("mmsearch", "result lists"), ("mmsearch-table", "as_table")):
        if name in batch and "faiss" in batch:
            out.append(f"batch {batch[name]['batch']} ({what}): mmsearch {batch[name]['qps']}"
                       f" QPS / raw FAISS {batch['faiss']['qps']} = "
                       f"{batch[name]['qps'] / batch['faiss']['qps']:.2f}x (goal >= 0.8)")
    for fname, goal in (("1%", 3), ("10%", 5)):
        row = single.get(("mmsearch", fname))
        if row:
            out.append(f"filtered {fname}: p50 {row['p50_ms']} ms (goal <= {goal}), recall "
                       f"{row['recall_at_10']}, always k {row['always_k']}")
    out.append(f"load {result['load_start']} -> {result['load_end']}")
    return out


if __name__ == "__main__":
    main()
