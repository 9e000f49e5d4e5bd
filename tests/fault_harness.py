"""Fault injection for stores: kill -9 at random points, and write errors (ENOSPC, EIO)
injected at each step of a commit. Used by tests/e2e/test_faults.py (a seeded sample) and
benchmarks/faults.py (the long campaign).

A worker process runs operations on a store (upsert, delete, compact, index retraining,
indexing image files) and journals each one: `BEGIN <effect>` before and `END` after. The
parent then checks the store: it opens, every file verifies, and it holds exactly the state
after the last finished operation, or after the one in flight; nothing committed is lost.

    python tests/fault_harness.py '{"mode": "kill", "store": ..., ...}'   # a worker
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PARAMS = {"threshold": 40, "m": 4, "nlist": 4, "train_per_list": 40}
OPS = (("upsert", 0.4), ("delete", 0.15), ("compact", 0.1), ("retrain", 0.1),
       ("index", 0.25))

State = dict[str, Any]  # id -> version (an int for upserted records, "file" for files)
_ENCODERS: dict[str, Any] = {}


# -- the worker (a child process) -----------------------------------------------------------
def _open(store: str, spec: str) -> Any:
    import mmsearch

    return mmsearch.open(store, model=spec, index_params=PARAMS)


def read_state(store: str | Path) -> State:
    """id -> version of the live rows (raises when the store cannot be opened)."""
    from mmsearch.store.store import Store

    s = Store(Path(store))
    if not s.exists:
        return {}
    table = s.read_live_table(["key", "id", "v", "path"])
    ids = table.column("id").to_pylist()
    vs = table.column("v").to_pylist() if "v" in table.column_names else [None] * len(ids)
    return {i: ("file" if v is None else int(v)) for i, v in zip(ids, vs, strict=True)}


def _plan(rng: random.Random, state: State, tag: str, media: Path, dim: int) -> dict[str, Any]:
    """The next operation and its effect on the state."""
    kind = rng.choices([k for k, _ in OPS], [w for _, w in OPS])[0]
    records = sorted(k for k, v in state.items() if v != "file")
    if kind == "upsert" or (kind == "delete" and not state):
        n = rng.randint(1, 6)
        ids = rng.sample(records, min(len(records), rng.randint(0, 2))) + \
            [f"{tag}-{i}" for i in range(n)]
        return {"op": "upsert", "set": {i: rng.randint(1, 10**9) for i in ids}}
    if kind == "delete":
        return {"op": "delete", "del": rng.sample(sorted(state), min(len(state), 3))}
    if kind == "index":
        from helpers import make_photo

        from mmsearch.store.schema import file_id

        folder = media / tag
        paths = [make_photo(folder / f"{i}.png", seed=rng.randint(0, 10**6), size=(48, 40))
                 for i in range(2)]
        return {"op": "index", "folder": str(folder),
                "add": [file_id(str(p.resolve())) for p in paths]}
    return {"op": kind}


def _run(col: Any, op: dict[str, Any], dim: int) -> None:
    import numpy as np

    if op["op"] == "upsert":
        rows = []
        for item, v in op["set"].items():
            vec = np.random.default_rng(v).normal(size=dim)
            rows.append({"id": item, "vector": vec.tolist(), "v": v})
        col.upsert(rows)
    elif op["op"] == "delete":
        col.delete(op["del"])
    elif op["op"] == "compact":
        with col._lock, col._store.writer() as store:
            store.compact()
    elif op["op"] == "retrain":
        col.rebuild_index()
    elif op["op"] == "index":
        col.index([op["folder"]], progress=False, tags=False, speech=False)


def worker(args: dict[str, Any]) -> None:
    """Run operations, journaling each; `fault` injects one write error at a given step."""
    store, journal = args["store"], Path(args["journal"])
    rng = random.Random(args["seed"])
    col = _open(store, args["spec"])
    if _ENCODERS.get(args["spec"]) is not None:
        col._encoder = _ENCODERS[args["spec"]]  # loaded once by the fork server
    dim = col.encoder.dim
    state = read_state(store)
    media = Path(args["media"])
    with open(journal, "a") as log:
        def note(line: str) -> None:
            log.write(line + "\n")
            log.flush()
            os.fsync(log.fileno())

        note("READY")
        if args["mode"] == "fault":
            op = _plan(rng, state, f"f{args['seed']}", media, dim)
            injector = Injector(args["step"], args["error"])
            note("BEGIN " + json.dumps(op))
            try:
                with injector:
                    _run(col, op, dim)
            except OSError as e:
                note(f"FAILED {injector.where} {errno.errorcode.get(e.errno, e.errno)}")
            except Exception as e:  # an OSError wrapped by a library layer
                note(f"FAILED {injector.where} {type(e).__name__}: {str(e)[:200]}")
            else:
                note("END" if injector.where else "END nofault")
            # the same process goes on writing: its in-memory state must be sound
            follow = {"op": "upsert", "set": {f"after-{args['seed']}": rng.randint(1, 10**9)}}
            note("BEGIN " + json.dumps(follow))
            _run(col, follow, dim)
            note("END")
            return
        for j in range(args.get("ops", 10**6)):
            op = _plan(rng, state, f"{args['seed']}-{j}", media, dim)
            note("BEGIN " + json.dumps(op))
            _run(col, op, dim)
            note("END")
            state = apply(state, op)


def apply(state: State, op: dict[str, Any], partial: set[str] | None = None) -> State:
    out = dict(state)
    if op["op"] == "upsert":
        out.update(op["set"])
    elif op["op"] == "delete":
        for i in op["del"]:
            out.pop(i, None)
    elif op["op"] == "index":
        for i in op["add"]:
            if partial is None or i in partial:
                out[i] = "file"
    return out


class Injector:
    """Raise OSError(`error`) at the `step`-th write, fsync or rename of a store file."""

    def __init__(self, step: int, error: str) -> None:
        self.step, self.error = step, getattr(errno, error)
        self.count = 0
        self.where: str | None = None

    def _tick(self, what: str) -> None:
        self.count += 1
        if self.count == self.step and self.where is None:
            self.where = f"step {self.step} ({what})"
            raise OSError(self.error, os.strerror(self.error))

    def __enter__(self) -> Injector:
        from mmsearch.store import files

        self._saved = (os.fsync, os.replace, files.__dict__.get("open"))
        real_fsync, real_replace = os.fsync, os.replace
        tick = self._tick

        def fsync(fd: int) -> None:
            tick("fsync")
            real_fsync(fd)

        def replace(src: Any, dst: Any, **kw: Any) -> None:
            tick(f"rename to {Path(dst).name}")
            real_replace(src, dst, **kw)

        class Faulty:
            def __init__(self, f: Any) -> None:
                self._f = f

            def write(self, data: Any) -> int:
                tick("write")
                return self._f.write(data)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._f, name)

            def __enter__(self) -> Faulty:
                return self

            def __exit__(self, *exc: object) -> None:
                self._f.close()

        def faulty_open(*a: Any, **kw: Any) -> Faulty:
            return Faulty(open(*a, **kw))

        os.fsync, os.replace = fsync, replace
        files.open = faulty_open  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        from mmsearch.store import files

        os.fsync, os.replace = self._saved[0], self._saved[1]
        if self._saved[2] is None:
            files.__dict__.pop("open", None)
        else:
            files.open = self._saved[2]  # type: ignore[attr-defined]


# -- the parent ---------------------------------------------------------------------------
@dataclass
class Tally:
    """What a campaign found."""

    trials: int = 0
    killed_in_op: dict[str, int] = field(default_factory=dict)
    faults: int = 0
    faults_where: dict[str, int] = field(default_factory=dict)
    open_failures: int = 0
    lost: int = 0
    tracebacks: int = 0
    problems: list[str] = field(default_factory=list)


def _journal(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[str]]:
    """(finished ops, the op in flight or None, raw lines) of a worker's journal."""
    done, current, lines = [], None, path.read_text().splitlines() if path.exists() else []
    for line in lines:
        if line.startswith("BEGIN "):
            current = json.loads(line[6:])
        elif line.startswith("END") and current is not None:
            done.append(current)
            current = None
        elif line.startswith("FAILED") and current is not None:
            current = {**current, "failed": True}
            done.append(current)
            current = None
    return done, current, lines


def check(store: Path, before: State, done: list[dict[str, Any]],
          current: dict[str, Any] | None, tally: Tally, label: str) -> State:
    """Verify the store after a trial; returns its state (the next trial's start)."""
    import mmsearch
    from mmsearch.store import doctor

    try:
        actual = read_state(store)
        report = doctor.check(store)
        if not report.healthy:
            raise RuntimeError("doctor: " + "; ".join(report.lines()))
        col = mmsearch.open(store)
        len(col)
        col.info()
    except Exception as e:
        tally.open_failures += 1
        tally.problems.append(f"{label}: store does not open: {type(e).__name__}: {e}")
        return before
    expected = before
    pending = []  # states allowed for ops whose outcome is unknown (a failed commit)
    for op in done:
        if op.get("failed"):
            pending.append(op)
            continue
        expected = apply(expected, op)
    candidates = [expected]
    for op in pending + ([current] if current else []):
        candidates += [apply(c, op) for c in candidates]
    if current is not None and current["op"] == "index":
        got = {i for i in current["add"] if i in actual}
        candidates.append(apply(expected, current, got))
    if actual in candidates:
        return actual
    lost = [i for i, v in expected.items() if actual.get(i) != v
            and all(c.get(i) != actual.get(i) for c in candidates)]
    extra = [i for i in actual if all(i not in c for c in candidates)]
    tally.lost += len(lost)
    tally.problems.append(f"{label}: state matches neither before nor after the op in "
                          f"flight ({current and current['op']}): lost {lost[:5]}, "
                          f"unexpected {extra[:5]}")
    return actual


def setup(root: Path, spec: str) -> Path:
    """A store with some records, files and a trained IVF-PQ index."""
    store = root / "store"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{HERE}", "OMP_NUM_THREADS": "1"}
    journal = root / "setup.log"
    args = {"mode": "kill", "store": str(store), "spec": spec, "seed": 0, "ops": 12,
            "journal": str(journal), "media": str(root / "media")}
    subprocess.run([sys.executable, str(Path(__file__)), json.dumps(args)], check=True,
                   env=env, timeout=600, capture_output=True)
    return store


def kill_trials(root: Path, spec: str, store: Path, trials: int, seed: int,
                max_delay: float = 1.0, tally: Tally | None = None,
                forker: Forker | None = None) -> Tally:
    """`trials` workers each killed with SIGKILL after a random delay; each store checked."""
    tally = tally or Tally()
    rng = random.Random(seed)
    own = forker is None
    forker = forker or Forker()
    state = read_state(store)
    try:
        for t in range(trials):
            journal, err = root / f"kill-{seed}-{t}.log", root / f"kill-{seed}-{t}.err"
            args = {"mode": "kill", "store": str(store), "spec": spec,
                    "seed": seed * 100_000 + t, "journal": str(journal),
                    "media": str(root / "media"), "stderr": str(err)}
            pid = forker.start(args)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (
                    journal.exists() and "READY" in journal.read_text()):
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, max_delay))
            with contextlib.suppress(ProcessLookupError):  # it may have finished
                os.kill(pid, signal.SIGKILL)
            forker.wait()
            _, current, _ = _journal(journal)
            op = current["op"] if current else "between ops"
            tally.killed_in_op[op] = tally.killed_in_op.get(op, 0) + 1
            state = _finish(store, state, journal, err, 0, tally, f"kill {t}")
    finally:
        if own:
            forker.close()
    return tally


def fault_trials(root: Path, spec: str, store: Path, trials: int, seed: int,
                 tally: Tally | None = None, max_step: int = 30,
                 forker: Forker | None = None) -> Tally:
    """Operations each hit by one ENOSPC or EIO at a random commit step, until `trials`
    faults were injected."""
    tally = tally or Tally()
    rng = random.Random(seed)
    own = forker is None
    forker = forker or Forker()
    state = read_state(store)
    t, target = 0, tally.faults + trials
    try:
        while tally.faults < target and t < trials * 4:
            journal, err = root / f"fault-{seed}-{t}.log", root / f"fault-{seed}-{t}.err"
            args = {"mode": "fault", "store": str(store), "spec": spec,
                    "seed": seed * 100_000 + t, "journal": str(journal),
                    "media": str(root / "media"), "stderr": str(err),
                    "step": rng.randint(1, max_step), "error": rng.choice(["ENOSPC", "EIO"])}
            forker.start(args)
            status = forker.wait()
            t += 1
            done, _, lines = _journal(journal)
            failed = [ln for ln in lines if ln.startswith("FAILED")]
            if failed:
                tally.faults += 1
                what = failed[0].split("(", 1)[-1].split(")")[0] if "(" in failed[0] else "?"
                key = f"{done[0]['op'] if done else '?'}: {what.split(' to ')[0]}"
                tally.faults_where[key] = tally.faults_where.get(key, 0) + 1
            state = _finish(store, state, journal, err, status, tally, f"fault {t}")
    finally:
        if own:
            forker.close()
    return tally


def _finish(store: Path, state: State, journal: Path, err: Path, status: int, tally: Tally,
            label: str) -> State:
    """Count a worker's traceback, check the store, clean up; returns the new state."""
    done, current, _ = _journal(journal)
    text = err.read_text(errors="replace") if err.exists() else ""
    if status != 0 or "Traceback" in text:
        tally.tracebacks += 1
        tally.problems.append(f"{label}: worker status {status}: {text[-600:]}")
    state = check(store, state, done, current, tally, label)
    tally.trials += 1
    journal.unlink(missing_ok=True)
    err.unlink(missing_ok=True)
    return state


# -- a fork server: workers start in milliseconds, not seconds of imports ----------------
def fork_server() -> None:
    """Import everything once, then fork one worker per line of JSON arguments on stdin.

    Answers `PID <pid>` when a worker starts and `EXIT <pid> <status>` when it ends. Runs
    single-threaded (OMP_NUM_THREADS=1) so forking after the imports is safe.
    """
    import torch

    import mmsearch.collection
    from mmsearch.store import doctor

    del mmsearch, doctor  # imported once, inherited by every worker

    from mmsearch.encoders.registry import load_encoder

    torch.set_num_threads(1)
    for line in sys.stdin:
        args = json.loads(line)
        if args["spec"] not in _ENCODERS:
            _ENCODERS[args["spec"]] = load_encoder(args["spec"], "cpu")
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                err = os.open(args["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(err, 2)
                worker(args)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        print(f"PID {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"EXIT {pid} {status}", flush=True)


class Forker:
    """The parent's end of a fork server."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{HERE}", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__)), "--fork-server"],
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)

    def start(self, args: dict[str, Any]) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(args) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line.startswith("PID "):
            raise RuntimeError(f"fork server answered {line!r}")
        return int(line.split()[1])

    def wait(self) -> int:
        """The exit status of the last worker started (after it ends or is killed)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("EXIT "):
            raise RuntimeError(f"fork server answered {line!r}")
        return int(line.split()[2])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


if __name__ == "__main__":
    sys.path[:0] = [str(REPO), str(HERE)]
    if sys.argv[1] == "--fork-server":
        fork_server()
    else:
        worker(json.loads(sys.argv[1]))
