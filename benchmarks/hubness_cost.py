"""What the hubness correction costs a text query (`mmsearch.planner.hubness`).

    python benchmarks/hubness_cost.py [--n 100000] [--rounds 7] [--queries 40]

A store of N clustered synthetic 256-d vectors upserted under `mmsearch-lite-4` (whose
query bank ships with the package); text queries through `col.search(text=..., k=10)` in
three modes, interleaved round by round: `off` (MMSEARCH_HUBNESS=off), `cold rows` (each
row's hubness forgotten before every query, so every candidate row is computed: the cost
on a fresh store or for rows never seen) and `warm` (the per-snapshot memo kept, as in a
long-running service). Prints p50 per mode, the ratios to `off`, the load average, and
the parts on their own: loading the bank (once per process) and the hubness of 64 rows
(what a query's unseen candidates cost at most).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mmsearch
from benchmarks._harness import clustered_vectors
from mmsearch.planner import hubness

WORDS = ("a dog", "two children", "a man", "a woman", "a red car", "a small boat", "people")
PLACES = ("on the beach", "in the snow", "on a city street", "in a park", "near a lake",
          "at night", "on a mountain")


def queries(n: int) -> list[str]:
    """`n` distinct short captions."""
    return [f"{WORDS[i % len(WORDS)]} {PLACES[(i // len(WORDS)) % len(PLACES)]} {i}"
            for i in range(n)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--queries", type=int, default=40)
    args = ap.parse_args(argv)
    if hubness.load("mmsearch-lite-4") is None:
        raise SystemExit("mmsearch-lite-4 ships no query bank in this tree")
    with tempfile.TemporaryDirectory() as tmp:
        col = mmsearch.open(Path(tmp) / "store", model="mmsearch-lite-4", device="cpu")
        rng = np.random.default_rng(0)
        vecs = clustered_vectors(rng, args.n, 256, max(16, args.n // 100), 0.5)
        for lo in range(0, args.n, 50_000):
            col.upsert([{"id": f"item{i}", "vector": vecs[i]}
                        for i in range(lo, min(lo + 50_000, args.n))])
        texts = queries(args.queries)
        for t in texts[:5]:
            col.search(text=t, k=10)  # model, snapshot, calibration, memo ready
        modes = ("off", "cold rows", "warm")
        times: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(args.rounds):
            for mode in modes:
                os.environ["MMSEARCH_HUBNESS"] = "off" if mode == "off" else "on"
                memo = col.snapshot().memo["hubness"]
                kept = memo["hub"].copy()  # the warm mode's memo, put back after
                for t in texts:
                    if mode == "cold rows":
                        memo["hub"][:] = np.nan
                    t0 = time.perf_counter()
                    col.search(text=t, k=10)
                    times[mode].append(time.perf_counter() - t0)
                memo["hub"][:] = np.where(np.isnan(kept), memo["hub"], kept)
        os.environ.pop("MMSEARCH_HUBNESS", None)
        col.close()
    p50 = {m: 1000 * float(np.median(v)) for m, v in times.items()}
    load_ms = []
    for _ in range(5):
        hubness.load.cache_clear()
        t0 = time.perf_counter()
        hubness.load("mmsearch-lite-4")
        load_ms.append(1000 * (time.perf_counter() - t0))
    prior = hubness.load("mmsearch-lite-4")
    rows = vecs[:64]
    part_ms = []
    for _ in range(50):
        t0 = time.perf_counter()
        prior.hubness(rows)
        part_ms.append(1000 * (time.perf_counter() - t0))
    print(f"{args.n:,} vectors, bank {len(prior.bank)} x {prior.bank.shape[1]}, "
          f"{args.rounds} rounds x {args.queries} queries, load {os.getloadavg()[0]:.2f}")
    print("| mode | p50 ms | ratio to off |\n|---|---|---|")
    for m in modes:
        print(f"| {m} | {p50[m]:.2f} | {p50[m] / p50['off']:.2f} |")
    print(f"bank load {np.median(load_ms):.1f} ms (median of 5), hubness of 64 rows "
          f"{np.median(part_ms):.2f} ms (median of 50)")


if __name__ == "__main__":
    main()
