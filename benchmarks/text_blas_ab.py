"""A/B: the numpy text encoder's one-BLAS-thread guard, found once vs looked up per call.

    python benchmarks/text_blas_ab.py [--rounds 15] [--per-round 20]

Encodes one fresh text at a time with `mmsearch-lite-4`'s numpy text path in a process that
has loaded what a search process loads (faiss, torch, duckdb, pyarrow), alternating each
round between `threadpool_limits(1, user_api="blas")` per call (before) and the shared
`ThreadpoolController` (`lite_text.one_blas_thread`, now). Prints the p50 of each and the
load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--per-round", type=int, default=20)
    args = ap.parse_args(argv)
    import duckdb  # noqa: F401  (loaded as in a search process: more libraries to scan)
    import faiss  # noqa: F401
    import pyarrow  # noqa: F401
    import torch  # noqa: F401
    from threadpoolctl import threadpool_limits

    from mmsearch.encoders import lite_text

    enc = lite_text.LiteLazy(spec="mmsearch-lite-4")
    enc.encode_texts(["warm up"])
    ways = {"per call (before)": lambda: threadpool_limits(1, user_api="blas"),
            "found once (now)": lite_text.one_blas_thread}
    times: dict[str, list[float]] = {w: [] for w in ways}
    for r in range(args.rounds):
        for name, guard in ways.items():
            lite_text.one_blas_thread = guard
            for i in range(args.per_round):
                t0 = time.perf_counter()
                enc.encode_texts([f"a dog running in the snow {r} {i}"])
                times[name].append(time.perf_counter() - t0)
    for name, t in times.items():
        print(f"{name}: p50 {1000 * float(np.median(t)):.2f} ms")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
