"""The HTTP service: endpoints, API key, limits, thumbnails, video moments, the page."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import make_photo
from PIL import Image

pytest.importorskip("fastapi", reason="the `serve` extra is not installed")
import uvicorn
from fastapi.testclient import TestClient

import mmsearch
from mmsearch.serve import Limits, create_app

KEY = {"X-API-Key": "s3cret"}
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_spec):
    from videos import make_video

    root = tmp_path_factory.mktemp("serve")
    lines = ["id,image,title,price,colour"]
    for i in range(6):
        make_photo(root / "img" / f"p{i}.jpg", seed=200 + i, size=(160, 120))
        lines.append(f"p{i},img/p{i}.jpg,Product {i},{10 * i},{'red' if i % 2 else 'blue'}")
    (root / "cat.csv").write_text("\n".join(lines) + "\n")
    make_video(root / "clip.mp4", [(10, 2.0), (11, 2.0)])
    col = mmsearch.open(root / "store", model=tiny_spec)
    col.index_catalog(root / "cat.csv", image_col="image", text_cols=["title"])
    col.index([root / "clip.mp4"])
    app = create_app(col, api_key="s3cret",
                     limits=Limits(max_k=50, max_image_bytes=200_000, max_body_bytes=400_000))
    yield root, col, app
    col.close()


@pytest.fixture
def client(served):
    return TestClient(served[2])


def _jpeg(path: Path, size: int = 100) -> bytes:
    buf = io.BytesIO()
    Image.open(path).convert("RGB").resize((size, size)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def test_health_stats_and_api_key(client):
    assert client.get("/health").json() == {"status": "ok", "pid": os.getpid()}
    denied = client.get("/stats")
    assert denied.status_code == 401 and "X-API-Key" in denied.json()["detail"]
    assert client.get("/stats", headers={"X-API-Key": "wrong"}).status_code == 401
    stats = client.get("/stats", headers=KEY).json()
    assert stats["items"] == 7 and stats["limits"]["max_k"] == 50
    assert client.post("/search", json={"text": "x"}).status_code == 401
    spec = client.get("/openapi.json").json()
    assert {"/search", "/search/image", "/upsert", "/delete", "/health", "/stats"} <= set(
        spec["paths"])


def test_search_text_filters_facets_and_thumbnails(client):
    out = client.post("/search", headers=KEY, json={
        "text": "Product", "k": 10, "filters": {"price": {"gte": 20}, "colour": "red"},
        "facets": ["colour"]}).json()
    ids = [r["id"] for r in out["results"]]
    assert sorted(ids) == ["p3", "p5"]
    assert out["facets"] == {"colour": [{"value": "red", "count": 2}]}
    first = out["results"][0]
    assert first["thumbnail"] == f"/thumbnail/{first['id']}" and first["price"] >= 20
    thumb = client.get(first["thumbnail"], headers=KEY)
    assert thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size[0] <= 256
    assert client.get("/thumbnail/nope", headers=KEY).status_code == 404


def test_image_upload_finds_the_product(client, served):
    root = served[0]
    for i in (0, 4):
        res = client.post("/search/image", headers=KEY, data={"k": "3"},
                          files={"image": ("q.jpg", (root / "img" / f"p{i}.jpg").read_bytes(),
                                           "image/jpeg")})
        assert res.status_code == 200, res.text
        # The same picture comes back with cosine 1. With a tiny random model its calibrated
        # score need not rank first: the planner fuses the product's text channel too, and
        # random text scores are as spread as the tiny model's visual ones (the real-model
        # ranking is checked in test_fashion_catalog.py).
        hits = res.json()["results"]
        same = [h["id"] for h in hits if h["similarity"] > 0.999]
        assert same == [f"p{i}"]
    bad = client.post("/search/image", headers=KEY,
                      files={"image": ("q.jpg", b"not an image", "image/jpeg")})
    assert bad.status_code == 400 and "cannot use image" in bad.json()["detail"]


def test_video_result_opens_at_its_moment(client, served):
    root = served[0]
    from videos import scene_image

    buf = io.BytesIO()
    Image.fromarray(scene_image(11)).save(buf, "PNG")
    res = client.post("/search/image", headers=KEY, data={"k": "1", "filters": json.dumps(
        {"modality": "video"})}, files={"image": ("q.png", buf.getvalue(), "image/png")})
    hit = res.json()["results"][0]
    assert hit["modality"] == "video" and hit["start_s"] >= 1.5
    assert hit["media"] == f"/media/{hit['id']}#t={hit['start_s']:g}"
    assert hit["thumbnail"].endswith(f"?start_s={hit['start_s']}")
    assert client.get(hit["thumbnail"], headers=KEY).status_code == 200
    media = client.get(hit["media"].split("#")[0], headers=KEY)
    assert media.status_code == 200 and media.content == (root / "clip.mp4").read_bytes()


def test_limits_and_bad_requests_get_clear_4xx(client, served):
    root = served[0]
    over_k = client.post("/search", headers=KEY, json={"text": "x", "k": 51})
    assert over_k.status_code == 400 and "limit of 50" in over_k.json()["detail"]
    assert client.post("/search", headers=KEY, json={"text": "x", "k": 0}).status_code == 422
    big = np.random.default_rng(0).bytes(300_000)  # size is checked before decoding
    res = client.post("/search/image", headers=KEY, files={"image": ("q.jpg", big, "image/jpeg")})
    assert res.status_code == 413 and "200000 bytes" in res.json()["detail"]
    res = client.post("/upsert", headers=KEY, content=b"x" * 500_000)
    assert res.status_code == 413
    chunks = iter([b'{"records": ["', b"x" * 300_000, b"x" * 300_000, b'"]}'])
    res = client.post("/upsert", headers={**KEY, "Content-Type": "application/json"},
                      content=chunks)
    assert res.status_code == 413, res.text
    res = client.post("/search", headers=KEY, json={"text": "x", "filters": {"nope": 1}})
    assert res.status_code == 400 and "bad filter" in res.json()["detail"]
    res = client.post("/search/image", headers=KEY, data={"filters": "{not json"},
                      files={"image": ("q.jpg", _jpeg(root / "img" / "p0.jpg"), "image/jpeg")})
    assert res.status_code == 400 and "JSON" in res.json()["detail"]
    res = client.post("/search", headers=KEY, json={"text": "x", "rerank": "lite"})
    assert res.status_code == 422 and "rerank" in res.text  # a count; the model is `reranker`
    res = client.post("/search", headers=KEY, json={"text": "x", "where": "1=1"})
    assert res.status_code == 422 and "where" in res.text  # trusted-only: library and CLI
    res = client.post("/upsert", headers=KEY, json={"records": [{"id": "z", "path": "/etc"}]})
    assert res.status_code == 400 and "not accepted over HTTP" in res.json()["detail"]


def test_rerank_over_http_with_the_offline_lite_reranker(client, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = client.post("/search", headers=KEY, json={
        "text": "Product", "k": 4, "rerank": 3, "reranker": "lite", "explain": True})
    assert res.status_code == 200, res.text
    hits = res.json()["results"]
    reranked = [h for h in hits if "prob" in h["explain"].get("rerank", {})]
    assert len(hits) == 4 and reranked and all(h["explain"]["rerank"]["model"] == "lite"
                                               for h in reranked)


def test_injection_through_filter_value_over_http(client):
    for evil in ["red' OR '1'='1", "red'; DELETE FROM items; --"]:
        res = client.post("/search", headers=KEY, json={"text": "x", "k": 50,
                                                         "filters": {"colour": evil}})
        assert res.status_code == 200 and res.json()["results"] == []
    assert client.get("/stats", headers=KEY).json()["items"] == 7


def test_upsert_and_delete_over_http(tmp_path):
    col = mmsearch.open(tmp_path / "s")
    client = TestClient(create_app(col))
    vecs = np.random.default_rng(0).normal(size=(3, 8))
    recs = [{"id": f"v{i}", "vector": v.tolist(), "shop": "a"} for i, v in enumerate(vecs)]
    assert client.post("/upsert", json={"records": recs}).json() == {"rows": 3}
    hits = client.post("/search", json={"vector": vecs[1].tolist(), "k": 1}).json()["results"]
    assert hits[0]["id"] == "v1" and hits[0]["shop"] == "a" and "thumbnail" not in hits[0]
    assert client.post("/delete", json={"ids": ["v1"]}).json() == {"rows": 1}
    hits = client.post("/search", json={"vector": vecs[1].tolist(), "k": 3}).json()["results"]
    assert "v1" not in [h["id"] for h in hits]
    bad = client.post("/upsert", json={"records": [{"id": "x"}]})
    assert bad.status_code == 400 and "vector" in bad.json()["detail"]
    col.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed "
                    "(apt-get install -y chromium)")
def test_page_in_headless_chromium(served, tmp_path):
    _root, col, _ = served
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(col), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/?q=Product&k=8&filter=colour:=:red"
        flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=8000",
                 "--window-size=1100,800"]
        dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True,
                             timeout=90).stdout
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "serve_page.png"
        shot.unlink(missing_ok=True)
        subprocess.run([*flags, f"--screenshot={shot}", url], capture_output=True,
                       timeout=90, check=False)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert 'data-ready="1"' in dom, dom[-2000:]
    cards = dom.count('class="card"')
    assert cards == 3, dom[-3000:]  # the red products p1, p3, p5
    assert all(f'data-id="p{i}"' in dom for i in (1, 3, 5))
    assert dom.count('src="/thumbnail/') == 3 and 'class="score"' in dom
    assert shot.is_file() and Image.open(shot).size == (1100, 800)
