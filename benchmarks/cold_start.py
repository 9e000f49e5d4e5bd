"""Cold-start times of the command line: a fresh process per run, as a user types it.

Commands: `query "TEXT"` on a store built with the default offline model (`--model`
names another), `--help`, `models`, and a no-op re-index of the photos the store
already holds (500 unchanged photos: the Flickr8k test photos in ../shared/data, or
synthetic ones). Each command runs `--runs` times per code tree, trees interleaved run by
run, after one untimed run that warms the file cache. Reported: median wall seconds (the
goal) and median CPU seconds (user + system of the child: steadier when the machine is
shared), with the 1-minute load average just before each command's runs. `--max-load`
waits (up to `--wait` seconds per command) for the load to fall below it first; the load
is recorded either way.

    # once: a store of the 500 Flickr8k photos with the default offline model
    PYTHONPATH=. python benchmarks/cold_start.py --prepare --store /tmp/cs/store
    # this tree against another checkout (e.g. `git archive main | tar -x -C /tmp/base`)
    python benchmarks/cold_start.py --store /tmp/cs/store \
        --tree after=. --tree before=/tmp/base --runs 5 --max-load 1.5
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import SHARED_DATA, make_photo

from mmsearch.encoders.lite_files import LATEST

FLICKR = SHARED_DATA / "flickr8k" / "images"
GOALS = {"--help": 0.5, "models": 1.0, "query": 2.0, "re-index": 2.0}


def prepare(photos: Path | None, store: Path, n: int, model: str) -> Path:
    """Index `photos` (default: the Flickr8k photos, else `n` synthetic ones) into `store`."""
    if photos is None and FLICKR.is_dir():
        photos = FLICKR
    if photos is None:
        photos = store.parent / "photos"
        for i in range(n):
            p = photos / f"p{i:03d}.jpg"
            if not p.exists():
                make_photo(p, seed=i, size=(320, 240))
    subprocess.run([sys.executable, "-m", "mmsearch", "index", str(photos), "--store",
                    str(store), "--model", model, "-q"], check=True)
    return photos


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    # bytecode caches as an installed (or once-run) checkout has them: without them every
    # run compiles mmsearch's sources again (PYTHONDONTWRITEBYTECODE=1 in some shells)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(cwd)
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{cmd} failed in {cwd}: {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def wait_for_quiet(max_load: float | None, wait: float) -> float:
    """The 1-minute load average, after waiting (up to `wait` s) for it to fall below
    `max_load` when given."""
    deadline = time.monotonic() + wait
    while max_load is not None and os.getloadavg()[0] >= max_load \
            and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=Path, default=None,
                    help="the photos the store holds (default: ../shared's Flickr8k photos)")
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--prepare", action="store_true")
    ap.add_argument("--model", default=LATEST, help="the store's model (default %(default)s)")
    ap.add_argument("-n", type=int, default=500, help="synthetic photos without ../shared")
    ap.add_argument("--tree", action="append", default=[], help="NAME=PATH of a checkout")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--query", default="a dog running on the beach")
    ap.add_argument("--max-load", type=float, default=None,
                    help="wait for the 1-minute load average to fall below this first")
    ap.add_argument("--wait", type=float, default=300.0, help="most seconds to wait per command")
    args = ap.parse_args()
    store = args.store.resolve()
    if args.prepare:
        prepare(args.photos, store, args.n, args.model)
        return
    photos = args.photos or (FLICKR if FLICKR.is_dir() else store.parent / "photos")
    trees = dict(t.split("=", 1) for t in args.tree) or {"this": "."}
    py = [sys.executable, "-m", "mmsearch"]
    commands = {
        f"query TEXT ({args.model} store)": ("query", [*py, "query", args.query, "--store",
                                                       str(store), "-k", "5"]),
        "--help": ("--help", [*py, "--help"]),
        "models": ("models", [*py, "models"]),
        f"no-op re-index ({len(list(photos.iterdir()))} photos)":
            ("re-index", [*py, "index", str(photos.resolve()), "--store", str(store), "-q"]),
    }
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    loads: dict[str, tuple[float, float]] = {}
    for name, (_, cmd) in commands.items():
        load = wait_for_quiet(args.max_load, args.wait)
        for path in trees.values():  # warm the file cache once
            timed(cmd, Path(path).resolve())
        for _ in range(args.runs):
            for tree, path in trees.items():
                results.setdefault((name, tree), []).append(timed(cmd, Path(path).resolve()))
        loads[name] = (load, os.getloadavg()[0])
    print(f"{os.cpu_count()} CPUs; median of {args.runs} fresh processes; load = 1-minute "
          "load average before / after the command's runs")
    heads = " | ".join(f"{t} wall s | {t} CPU s" for t in trees)
    print(f"| command | goal wall s | {heads} | load |")
    print(f"|---|---|{'---|---|' * len(trees)}---|")
    for name, (goal, _) in commands.items():
        cells = []
        for tree in trees:
            runs = results[(name, tree)]
            cells.append(f"{statistics.median(w for w, _ in runs):.2f} | "
                         f"{statistics.median(c for _, c in runs):.2f}")
        before, after = loads[name]
        print(f"| {name} | {GOALS[goal]} | {' | '.join(cells)} | {before:.2f} / {after:.2f} |")


if __name__ == "__main__":
    main()
