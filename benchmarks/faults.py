"""Fault campaign: kill -9 trials and injected write errors against one store.

    python benchmarks/faults.py --kills 200 --faults 50 [--seed 1] [--json out.json]

Each kill trial starts a worker (forked from a server that imported everything once) that
runs random operations (upsert, delete, compaction, index retraining, indexing image files)
on the store, kills it with SIGKILL after a random delay, then checks the store: it opens,
`mmsearch doctor` finds every checksum intact, and it holds exactly the state after the
last finished operation or after the one in flight. Each fault trial runs one operation
with ENOSPC or EIO injected at a random step (a write, fsync or rename) of its commits,
then a follow-up write in the same process, and checks the same. See
tests/fault_harness.py. Prints a summary; exit 1 when anything was lost or failed to open.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import fault_harness as fh  # noqa: E402
from tiny_model import make_tiny_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--faults", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-delay", type=float, default=1.0,
                    help="seconds after the worker is ready before the kill, at most")
    ap.add_argument("--json", type=Path, help="write the tally here")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mmsearch-faults-"))
    spec = make_tiny_model(root / "model")
    started = time.time()
    store = fh.setup(root, spec)
    forker = fh.Forker()
    try:
        tally = fh.kill_trials(root, spec, store, args.kills, args.seed,
                               max_delay=args.max_delay, forker=forker)
        kills_done = time.time()
        tally = fh.fault_trials(root, spec, store, args.faults, args.seed + 1, tally=tally,
                                forker=forker)
    finally:
        forker.close()
    state = fh.read_state(store)
    out = {**asdict(tally), "kill_trials": args.kills, "seconds": round(time.time() - started),
           "kill_seconds": round(kills_done - started), "final_items": len(state),
           "load_average": os.getloadavg()}
    print(json.dumps({k: v for k, v in out.items() if k != "problems"}, indent=1))
    for p in tally.problems[:20]:
        print("PROBLEM", p)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    bad = tally.open_failures or tally.lost or tally.tracebacks or tally.problems
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
