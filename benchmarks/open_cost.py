"""First search after opening a store, and the memory it costs, in fresh processes.

    PYTHONPATH=. python benchmarks/open_cost.py STORE --runs 3

Each run is a new Python process that imports the library first (its import is not the
store's open), then times `mmsearch.open(STORE)` + one `search(vector=q, k=10)` and reads
the growth of its anonymous resident memory (file-backed maps such as the memory-mapped
vectors and metadata excluded; the mapped pages touched are `rss_file_bytes`). Runs
alternate between the default (a file's checksum is verified when its stat differs from
`STORE/.verified`, so only the first run after a change pays it) and
`MMSEARCH_VERIFY_MAX_MB=0` (sizes and headers only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, os, sys, time
import numpy as np
import mmsearch, mmsearch.collection

def rss(kind="RssAnon:"):
    for line in open("/proc/self/status"):
        if line.startswith(kind):
            return int(line.split()[1]) * 1024
    return 0

rng = np.random.default_rng(0)  # the benchmark's query, not the library's work
before, before_file = rss(), rss("RssFile:")
t = time.perf_counter()
col = mmsearch.open(sys.argv[1])
snap = col.snapshot()
q = rng.standard_normal(snap.vectors.dim).astype(np.float32)
col.search(vector=q, k=10)
seconds = time.perf_counter() - t
print(json.dumps({"first_search_s": round(seconds, 3), "rss_anon_bytes": rss() - before,
                  "rss_file_bytes": rss("RssFile:") - before_file, "rows": len(snap)}))
"""


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--upgrade", action="store_true",
                    help="first bring a store written by an earlier version to this one "
                         "(one commit: Arrow copies of the segments, the index's key digest)")
    args = ap.parse_args(argv)
    if args.upgrade:
        from mmsearch.store.store import Store
        from mmsearch.view.ann import upgrade

        store = Store(args.store)
        with store.writer():
            upgrade(store)
    out: dict = {"store": args.store, "load_start": os.getloadavg(), "runs": []}
    for _ in range(args.runs):
        for verify in ("default", "0"):
            env = dict(os.environ)
            if verify == "0":
                env["MMSEARCH_VERIFY_MAX_MB"] = "0"
            done = subprocess.run([sys.executable, "-c", CHILD, args.store], env=env,
                                  capture_output=True, text=True, check=True)
            run = json.loads(done.stdout.strip().splitlines()[-1])
            run["verify"] = verify
            run["bytes_per_vector"] = round(run["rss_anon_bytes"] / max(1, run["rows"]), 1)
            out["runs"].append(run)
            print(run, flush=True)
    out["load_end"] = os.getloadavg()
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
