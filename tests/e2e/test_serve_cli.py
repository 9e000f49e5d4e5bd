"""`mmsearch serve` as a user starts it: it says where it serves only once it listens."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("uvicorn", reason="the `serve` extra is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_reports_a_used_port_and_its_address_after_the_bind(cli, photos, tmp_path,
                                                                   tiny_spec):
    store = tmp_path / "store"
    assert cli("index", photos, "--store", store, "--model", tiny_spec, "-q").exit_code == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = cli("serve", "--store", store, "--port", port)
        assert res.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in res.stderr
        assert "serving" not in res.stderr

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mmsearch", "serve", "--store", str(store),
                             "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert f"on http://127.0.0.1:{port}/" in line, line
        for _ in range(100):  # the address printed is already listening
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("the server never answered")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _get(url: str, body: bytes | None = None) -> dict:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
        return json.loads(r.read())


def test_workers_share_the_port_see_each_others_writes_and_are_restarted(cli, photos,
                                                                          tmp_path, tiny_spec):
    """`--workers 2`: two processes answer on one port; a write through one is seen by the
    other; a worker killed outright is replaced while the other keeps answering."""
    store = tmp_path / "store"
    assert cli("index", photos, "--store", store, "--model", tiny_spec, "-q").exit_code == 0
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "mmsearch", "serve", "--store", str(store),
                             "--port", str(port), "--workers", "2"],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "2 workers" in proc.stderr.readline()
        pids: set[int] = set()
        deadline = time.monotonic() + 120
        while len(pids) < 2 and time.monotonic() < deadline:
            try:
                pids.add(_get(f"{base}/health")["pid"])
            except OSError:
                time.sleep(0.2)
        assert len(pids) == 2 and proc.pid not in pids, pids
        vec = [1.0] + [0.0] * (_store_dim(store) - 1)
        _get(f"{base}/upsert", json.dumps({"records": [{"id": "new", "vector": vec}]}).encode())
        for _ in range(20):  # whichever worker answers, the new record is there
            hits = _get(f"{base}/search", json.dumps({"vector": vec, "k": 1}).encode())
            assert hits["results"][0]["id"] == "new"
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        seen: set[int] = set()
        deadline = time.monotonic() + 120
        while not (seen - pids) and time.monotonic() < deadline:
            try:
                seen.add(_get(f"{base}/health")["pid"])
            except OSError:
                time.sleep(0.2)
        assert seen - pids, "the killed worker was never replaced"
        assert victim not in seen
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _store_dim(store) -> int:
    import mmsearch

    with mmsearch.open(store) as col:
        return int(col.info()["dim"])


def test_a_serving_process_sets_torch_threads_without_loading_torch(cli, photos, tmp_path,
                                                                     tiny_spec):
    """`--threads` reaches torch through OMP_NUM_THREADS when torch is not loaded yet, so
    a worker answering text queries on a lite store never pays torch's import."""
    store = tmp_path / "store"
    assert cli("index", photos, "--store", store, "--model", tiny_spec, "-q").exit_code == 0
    code = ("import os, sys; from mmsearch.serve.run import ServeSpec, build_app; "
            f"build_app(ServeSpec({str(store)!r}, threads=1)); "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "import torch; print(os.environ['OMP_NUM_THREADS'], torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]  # torch alone takes every core
