"""Recall targeting on vector sets of different intrinsic dimension.

    PYTHONPATH=. python benchmarks/recall_targets.py --n 200000 [--sets isotropic ...]

For each set a store is written with `upsert` and its IVF-PQ index trained (which measures
recall on 256 held-out stored vectors and picks nprobe / re-score depth for the target).
Reported: the chosen setting, the measured recall, the recall@10 of the index for 1,000
fresh queries (never stored) at that setting and at the former fixed defaults (nprobe
max(8, nlist/64), re-score 20x), and the milliseconds per query of both (batch of 1,000).
Sets: `isotropic` (the issue's case: 2,000 centres in 384-d, isotropic noise), `mixture`
(benchmarks/ann.py's 512-d clustered set), `subspace` (512-d, intrinsic dimension 8) and
`lite` (real Flickr8k image embeddings from mmsearch-lite; needs ../shared; 1,000 images,
cached after the first run).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mmsearch
from benchmarks import vector_sets as vs
from mmsearch.index.params import DEFAULT_RERANK

SHARED = Path(os.environ.get("MMSEARCH_SHARED") or Path(__file__).resolve().parents[2] / "shared")


def sets(n: int) -> dict:
    return {
        "isotropic": lambda s, m: vs.isotropic(m, dim=384, centers=2000, noise=1.0, seed=s),
        "mixture": lambda s, m: vs.mixture(m, dim=512, seed=s),
        "subspace": lambda s, m: vs.subspace(m, dim=512, rank=8, seed=s),
    }


def fresh_recall(index, q: np.ndarray, x: np.ndarray, nprobe: int, rerank: int
                 ) -> tuple[float, float]:
    index.nprobe, index.rerank = nprobe, rerank
    t = time.perf_counter()
    _, rows = index.search(q, 10)
    ms = (time.perf_counter() - t) * 1000 / len(q)
    truth = faiss.knn(q, x, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]
    r = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, truth, strict=True)]))
    return round(r, 4), round(ms, 3)


def run_set(name: str, x: np.ndarray, q: np.ndarray, threshold: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        with mmsearch.open(Path(tmp) / "s", index_params={"threshold": threshold}) as col:
            for lo in range(0, len(x), 100_000):
                v = np.ascontiguousarray(x[lo:lo + 100_000])
                col.upsert(pa.table({"id": [str(i) for i in range(lo, lo + len(v))],
                                     "vector": pa.FixedSizeListArray.from_arrays(
                                         pa.array(v.reshape(-1)), x.shape[1])}))
            build = time.perf_counter() - t
            info = col.info()["index_params"]
            tuned = json.loads((Path(tmp) / "s" / "manifest.json").read_text())["ann"]["tuning"]
            index = col.snapshot().index
            old_nprobe = max(8, info["nlist"] // 64)
            now = fresh_recall(index, q, x, info["nprobe"], info["rerank"])
            old = fresh_recall(index, q, x, min(old_nprobe, info["nlist"]), DEFAULT_RERANK)
    return {"set": name, "n": len(x), "dim": x.shape[1], "nlist": info["nlist"],
            "nprobe": info["nprobe"], "rerank": info["rerank"],
            "measured_recall": tuned["recall_at_10"], "met": tuned["met"],
            "tune_s": tuned["seconds"], "build_s": round(build, 1),
            "fresh_recall": now[0], "fresh_ms_per_query": now[1],
            "old_defaults": {"nprobe": min(old_nprobe, info["nlist"]), "rerank": DEFAULT_RERANK,
                             "fresh_recall": old[0], "fresh_ms_per_query": old[1]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--sets", nargs="+", default=["isotropic", "mixture", "subspace", "lite"])
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name(
        "recall_targets_results.json"))
    args = ap.parse_args()
    faiss.omp_set_num_threads(2)
    out = {"load_start": [round(v, 2) for v in os.getloadavg()], "rows": []}
    gens = sets(args.n)
    for name in args.sets:
        if name == "lite":
            images = SHARED / "data" / "flickr8k_train224" / "images"
            if not images.is_dir():
                print(f"lite: skipped, no images at {images}")
                continue
            v = vs.lite_images(images, 1000)
            x, q, threshold = v[:800], v[800:], 500
        else:
            x, q, threshold = gens[name](1, args.n), gens[name](2, args.queries), 50_000
        row = run_set(name, x, q, threshold)
        out["rows"].append(row)
        print(json.dumps(row), flush=True)
    out["load_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
