"""Recall you can trust: measure the IVF-PQ index on its own data and pick its search depth.

When an index is (re)trained, a sample of stored vectors is held out as queries (each
query's own row is excluded from its answers), their exact 10 nearest neighbours are
computed by brute force, and every (nprobe, re-score depth) pair of a small ladder is
scored by recall@10. The cheapest pair whose recall reaches `AnnParams.target_recall` with
95 % confidence (mean minus 1.645 standard errors over the held-out queries) becomes the
index's search setting; the measured recall is stored with the index (manifest `ann.tuning`)
and shown by `mmsearch info`. When no pair reaches the target, the pair with the best
recall is used and the shortfall is reported (`met: false`).

Cost model (what "cheapest" means): bytes read per query. Visiting `nprobe` lists scans
about nprobe × rows / nlist PQ codes (code bytes each); re-scoring reads `depth` full
vectors (4 × dim bytes each) from the memory-mapped segments. At 1M × 512 on this project's
CPU both run at about 2 GB/s (benchmarks/RESULTS.md, "Batch throughput"), so bytes are a
fair, noise-free proxy for time.

Recall counts a returned row as correct when its exact score reaches the k-th exact score
(so ties and duplicate vectors do not count as misses).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from mmsearch.index.params import DEFAULT_RERANK, AnnParams

if TYPE_CHECKING:
    from mmsearch.index.ivfpq import AnnIndex, KeyMap
    from mmsearch.vectors import LiveVectors

log = logging.getLogger(__name__)

#: recall@K is what is targeted and reported.
K = 10
#: Re-score depths tried, as multiples of max(k, 10) candidates.
RERANK_LADDER = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 70, 100, 150, 200)
#: Slack for float32 rounding when comparing exact scores.
EPS = 1e-5
#: A setting reaches the target when its measured recall minus Z standard errors (over the
#: held-out queries) does: one-sided 95 % confidence, so the promise holds for new queries
#: (held-out stored vectors read about 0.01 optimistic on clustered data).
Z = 1.645


def nprobe_ladder(nlist: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, ... (powers of two and 1.5x between), then nlist."""
    out, p = [], 1
    while p < nlist:
        out.append(p)
        if p >= 2 and p * 3 // 2 < nlist:
            out.append(p * 3 // 2)
        p *= 2
    out.append(nlist)
    return sorted(set(out))


def cost(nprobe: int, rerank: int, *, rows: int, nlist: int, code_bytes: float,
         dim: int) -> float:
    """Bytes read per query at this setting (see the module notes)."""
    return nprobe * rows / max(1, nlist) * code_bytes + rerank * K * 4 * dim


def measure(ann: AnnIndex, keymap: KeyMap, vectors: LiveVectors, params: AnnParams,
            seed: int = 0) -> dict[str, Any]:
    """Choose nprobe and the re-score depth for `params.target_recall`; returns the record
    stored as the index's `tuning` (the chosen setting, its recall, the target, how many
    queries and rows it was measured on)."""
    from mmsearch.index.ivfpq import _top_k, inner_products  # (ivfpq imports this module)

    started = time.perf_counter()
    n = len(vectors)
    nq = int(min(params.tune_queries, max(1, n // 4)))
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, nq, replace=False))
    q = vectors.take(rows)
    kth = _kth_exact_scores(vectors, q, rows)
    nlist = ann.nlist
    probes = [params.nprobe_for(nlist)] if params.nprobe else nprobe_ladder(nlist)
    depths = [params.rerank] if params.rerank else list(RERANK_LADDER)
    pool = min(n - 1, K * max(depths))
    code_bytes = ann.code_bytes()
    price = {(p, d): cost(p, d, rows=n, nlist=nlist, code_bytes=code_bytes, dim=vectors.dim)
             for p in probes for d in depths}
    best: tuple[float, float, int, int] | None = None  # (cost, -recall, nprobe, rerank)
    fallback: tuple[float, float, int, int] | None = None  # best recall when none reaches it
    table: list[list[float]] = []
    for p in probes:
        if best is not None and price[p, depths[0]] >= best[0]:
            break  # every deeper probe costs more than the cheapest setting found
        keys = ann.search(q, pool + 1, p)
        cand = _drop_self(keymap.rows_of(keys), rows, pool)
        sims = inner_products(vectors, q, cand)
        for d in depths:
            s, _ = _top_k(sims[:, :d * K], cand[:, :d * K], K)
            hit = np.isfinite(s) & (s >= kth[:, None] - EPS)
            per_query = hit.sum(axis=1) / K
            r = float(per_query.mean())
            low = r - Z * float(per_query.std(ddof=1)) / np.sqrt(nq) if nq > 1 else r
            table.append([p, d, round(r, 4), round(low, 4)])
            if fallback is None or (-r, price[p, d]) < (fallback[1], fallback[0]):
                fallback = (price[p, d], -r, p, d)
            if low >= params.target_recall:
                if best is None or price[p, d] < best[0]:
                    best = (price[p, d], -r, p, d)
                break  # deeper re-scoring at this nprobe only costs more
    chosen = best or fallback
    assert chosen is not None
    _, neg_recall, nprobe, rerank = chosen
    low = next(g[3] for g in table if (g[0], g[1]) == (nprobe, rerank))
    record = {"nprobe": int(nprobe), "rerank": int(rerank), "recall_at_10": round(-neg_recall, 4),
              "lower_bound_95": low,
              "target": params.target_recall, "met": best is not None, "queries": nq,
              "rows": n, "measured_at": time.time(),
              "seconds": round(time.perf_counter() - started, 3), "grid": table}
    if best is None:
        log.warning("index recall@10 reaches only %.3f (target %.2f) at nprobe %d, re-score "
                    "%dx", -neg_recall, params.target_recall, nprobe, rerank)
    return record


def settings(meta: dict[str, Any], params: AnnParams, nlist: int) -> tuple[int, int]:
    """(nprobe, rerank) for searching: explicit parameters win, then the measured tuning,
    then the untuned defaults."""
    tuned = meta.get("tuning") or {}
    nprobe = (params.nprobe_for(nlist) if params.nprobe or "nprobe" not in tuned
              else min(nlist, int(tuned["nprobe"])))
    rerank = params.rerank or int(tuned.get("rerank") or DEFAULT_RERANK)
    return nprobe, rerank


def needs_measuring(meta: dict[str, Any], rows: int, params: AnnParams) -> bool:
    """True when the index has no measurement for the current target and parameters, or
    the rows changed `params.remeasure_growth` times or more since it was taken."""
    tuned = meta.get("tuning")
    if not tuned or tuned.get("target") != params.target_recall:
        return True
    if (params.nprobe and tuned.get("nprobe") != params.nprobe_for(int(meta["nlist"]))) or (
            params.rerank and tuned.get("rerank") != params.rerank):
        return True
    then = max(1, int(tuned.get("rows") or 1))
    g = params.remeasure_growth
    return not (then / g < rows < then * g)


def _kth_exact_scores(vectors: LiveVectors, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each held-out query's K-th best exact score among the other rows."""
    from mmsearch.index.ivfpq import exact_search

    scores, found = exact_search(vectors, q, K + 1)
    self_hit = found == rows[:, None]
    # drop the query's own row (or, when duplicates pushed it out, the last one)
    keep = ~self_hit
    keep[~self_hit.any(axis=1), K] = False
    return scores[keep].reshape(len(q), K)[:, K - 1]


def _drop_self(cand: np.ndarray, rows: np.ndarray, pool: int) -> np.ndarray:
    """Remove each query's own row from its candidates (keeping their order), then the
    first `pool` of them."""
    own = cand == rows[:, None]
    order = np.argsort(own, axis=1, kind="stable")  # own row (True) to the end
    return np.ascontiguousarray(np.take_along_axis(cand, order, axis=1)[:, :pool])
