"""`mmsearch serve` as a user starts it: it says where it serves only once it listens."""

from __future__ import annotations

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
