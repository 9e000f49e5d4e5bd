"""Cold-start times of the command line: a fresh process per run, as a user types it.

Commands: `query "TEXT"` on a mmsearch-lite store, `--help`, `models`, and a no-op
re-index of the photos the store already holds (500 unchanged photos). Each command runs
`--runs` times per code tree, trees interleaved run by run; reported: median wall seconds
and median CPU seconds (user + system of the child; steadier than wall time when the
machine is shared), with the load average before and after.

    # once: a store of 500 small synthetic photos with mmsearch-lite
    PYTHONPATH=. python benchmarks/cold_start.py --prepare --photos /tmp/cs/photos \
        --store /tmp/cs/store
    # this tree against another checkout (e.g. `git archive main | tar -x -C /tmp/base`)
    python benchmarks/cold_start.py --photos /tmp/cs/photos --store /tmp/cs/store \
        --tree after=. --tree before=/tmp/base --runs 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def prepare(photos: Path, store: Path, n: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers import make_photo

    for i in range(n):
        p = photos / f"p{i:03d}.jpg"
        if not p.exists():
            make_photo(p, seed=i, size=(120, 90))
    subprocess.run([sys.executable, "-m", "mmsearch", "index", str(photos), "--store",
                    str(store), "--model", "mmsearch-lite", "-q"], check=True)


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{cmd} failed in {cwd}: {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--prepare", action="store_true")
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--tree", action="append", default=[], help="NAME=PATH of a checkout")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--query", default="a dog running on the beach")
    args = ap.parse_args()
    if args.prepare:
        prepare(args.photos.resolve(), args.store.resolve(), args.n)
        return
    trees = dict(t.split("=", 1) for t in args.tree) or {"this": "."}
    py = [sys.executable, "-m", "mmsearch"]
    store, photos = str(args.store.resolve()), str(args.photos.resolve())
    commands = {
        "query TEXT (lite store)": [*py, "query", args.query, "--store", store, "-k", "5"],
        "--help": [*py, "--help"],
        "models": [*py, "models"],
        f"no-op re-index ({args.n} photos)": [*py, "index", photos, "--store", store, "-q"],
    }
    load0 = os.getloadavg()
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for name, cmd in commands.items():
        for path in trees.values():  # warm the file cache once
            timed(cmd, Path(path).resolve())
        for _ in range(args.runs):
            for tree, path in trees.items():
                results.setdefault((name, tree), []).append(timed(cmd, Path(path).resolve()))
    load1 = os.getloadavg()
    print(f"load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, after "
          f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; {os.cpu_count()} CPUs; "
          f"median of {args.runs}")
    print(f"| command | {' | '.join(f'{t} wall s | {t} CPU s' for t in trees)} |")
    print(f"|---|{'---|---|' * len(trees)}")
    for name in commands:
        cells = []
        for tree in trees:
            runs = results[(name, tree)]
            cells.append(f"{statistics.median(w for w, _ in runs):.2f} | "
                         f"{statistics.median(c for _, c in runs):.2f}")
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
