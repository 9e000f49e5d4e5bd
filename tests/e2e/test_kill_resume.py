"""A kill -9 at any moment leaves a store that opens, is consistent, and resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import make_photo

import mmsearch
from mmsearch.store.store import Store


def _check_consistent(store_path) -> int:
    store = Store(store_path)
    if not store.exists:
        return 0
    table, vectors = store.read_live()
    assert len(table) == len(vectors) == store.manifest["rows"]
    assert len(set(table.column("path").to_pylist())) == len(table), "no duplicate files"
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    referenced = {f"{s.name}{ext}" for s in store.segments for ext in (".npy", ".parquet")}
    assert referenced <= {f.name for f in (store_path / "segments").iterdir()}
    with mmsearch.open(store_path) as col:
        assert len(col) == len(table)
    return len(table)


def _wait_for_generation(store_path, generation: int, timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if Store(store_path).generation >= generation:
            return
        time.sleep(0.01)


@pytest.mark.parametrize("when", ["0.5s", "3s", "after-commit-2", "after-commit-6"])
def test_kill_9_during_index_then_resume(tmp_path, tiny_spec, when):
    photos = tmp_path / "photos"
    for i in range(60):
        make_photo(photos / f"p{i:03d}.jpg", seed=1000 + i, size=(160, 120))
    store = tmp_path / "store"
    env = {**os.environ, "MMSEARCH_COMMIT_EVERY": "4"}
    cmd = [sys.executable, "-m", "mmsearch", "index", str(photos), "--store", str(store),
           "--model", tiny_spec, "--batch-size", "4"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if when.startswith("after-commit-"):
        _wait_for_generation(store, int(when.rsplit("-", 1)[1]))
    else:
        time.sleep(float(when.rstrip("s")))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    partial = _check_consistent(store)
    assert partial <= 60
    if when.startswith("after-commit-"):
        assert partial > 0, "the kill landed after a commit, so some work was kept"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert _check_consistent(store) == 60
    assert f"{60 - partial} added" in done.stderr or partial == 60
