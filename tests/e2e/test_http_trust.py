"""The HTTP service under hostile or unlucky requests: right status codes, declared in the
OpenAPI schema; files served only while they are the files that were indexed."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os

import numpy as np
import pytest
from helpers import make_photo
from PIL import Image

pytest.importorskip("fastapi", reason="the `serve` extra is not installed")
from fastapi.testclient import TestClient

import mmsearch
from mmsearch.serve import create_app

KEY = {"X-API-Key": "k"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_spec):
    root = tmp_path_factory.mktemp("trust")
    for i in range(3):
        make_photo(root / "pics" / f"p{i}.jpg", seed=300 + i, size=(120, 90))
    lines = ["id,image,title,price"] + [f"c{i},pics/p{i}.jpg,Thing {i},{i}" for i in range(3)]
    (root / "cat.csv").write_text("\n".join(lines) + "\n")
    col = mmsearch.open(root / "store", model=tiny_spec)
    col.index([root / "pics"])
    col.index_catalog(root / "cat.csv", image_col="image", text_cols=["title"])
    return root, col, TestClient(create_app(col, api_key="k"))


@contextlib.contextmanager
def _replaced(path, link_to: str | None = None):
    """The file turned into a symlink to `link_to` (else: as many zero bytes, same mtime)
    for the block, then restored with its bytes and times."""
    saved, stat = path.read_bytes(), path.stat()
    if link_to:
        path.unlink()
        path.symlink_to(link_to)
    else:
        path.write_bytes(bytes(len(saved)))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    try:
        yield
    finally:
        path.unlink()
        path.write_bytes(saved)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _id_of(col, path) -> str:
    snap = col.snapshot()
    return snap.sql("SELECT id FROM items WHERE path = ? AND modality = 'image' "
                    "AND content_hash IS NOT NULL", [str(path)]).fetchone()[0]


def test_the_api_key_is_only_read_from_the_header(served):
    client = served[2]
    assert client.get("/stats", params={"api_key": "k"}).status_code == 401
    assert client.get("/stats", headers=KEY).status_code == 200


@pytest.mark.parametrize("filters", [{"price": {"between": 5}}, {"price": {"in": None}},
                                     {"price": {"lt": 1e308 * 10}}, {"price": {"eq": 2**70}},
                                     {"price": {"nope": 1}}, {"price": {"eq": {"a": 1}}}])
def test_malformed_filters_are_400(served, filters):
    body = json.dumps({"text": "thing", "filters": filters})  # Infinity as Python writes it
    r = served[2].post("/search", headers={**KEY, "Content-Type": "application/json"},
                       content=body)
    assert r.status_code == 400, r.text


def test_nan_or_inf_vectors_are_400(served):
    client = served[2]
    dim = served[1].encoder.dim
    for bad in ("NaN", "Infinity", "1e999"):
        body = '{"vector": [' + ", ".join([bad] * dim) + "]}"
        r = client.post("/search", headers={**KEY, "Content-Type": "application/json"},
                        content=body)
        assert r.status_code in (400, 422), (bad, r.status_code, r.text)
    r = client.post("/upsert", headers={**KEY, "Content-Type": "application/json"},
                    content='{"records": [{"id": "n", "vector": [' + ", ".join(["NaN"] * dim)
                    + "]}]}")
    assert r.status_code in (400, 422)


def test_limits_are_413_naming_the_limit(served):
    client = served[2]
    r = client.post("/search", headers=KEY,
                    json={"text": "x " + " ".join(f"-n{i}" for i in range(3_000))})
    assert r.status_code == 413 and r.json()["limit"] == "max_text_chars"
    r = client.post("/search", headers=KEY,
                    json={"text": "x " + " ".join(f"-n{i}" for i in range(100_000))})
    assert r.status_code == 413 and r.json()["limit"] == "max_query_body_bytes"
    r = client.post("/search", headers=KEY,
                    json={"text": "x", "filters": {"id": {"in": [str(i) for i in
                                                                  range(20_000)]}}})
    assert r.status_code == 413 and r.json()["limit"] == "max_in_values"
    buf = io.BytesIO()
    Image.new("L", (9000, 9000)).save(buf, "PNG", optimize=True)  # 81 MP in a few KB
    r = client.post("/search/image", headers=KEY, files={"image": ("big.png", buf.getvalue())})
    assert r.status_code == 413 and r.json()["limit"] == "max_image_pixels"


def test_a_write_while_another_process_writes_is_503_with_retry_after(served):
    _root, col, client = served
    fd = os.open(col.path / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        v = np.ones(col.encoder.dim).tolist()
        r = client.post("/upsert", headers=KEY, json={"records": [{"id": "w", "vector": v}]})
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
        assert client.post("/search", headers=KEY, json={"text": "thing"}).status_code == 200
    finally:
        os.close(fd)


def test_media_is_not_served_once_the_file_is_replaced_by_a_symlink(served):
    root, col, client = served
    path = root / "pics" / "p0.jpg"
    item = _id_of(col, path)
    assert client.get(f"/media/{item}", headers=KEY).status_code == 200
    assert client.get(f"/thumbnail/{item}", headers=KEY).status_code == 200
    with _replaced(path, "/etc/passwd"):
        r = client.get(f"/media/{item}", headers=KEY)
        assert r.status_code == 409 and "root:" not in r.text
        assert client.get(f"/thumbnail/{item}", headers=KEY).status_code == 409


def test_thumbnail_of_a_file_replaced_by_dev_zero_is_refused(served):
    root, col, client = served
    path = root / "pics" / "p1.jpg"
    item = _id_of(col, path)
    with _replaced(path, "/dev/zero"):
        assert client.get(f"/thumbnail/{item}", headers=KEY).status_code == 404
        assert client.get(f"/media/{item}", headers=KEY).status_code == 404
    assert client.get(f"/thumbnail/{item}", headers=KEY).status_code == 200


def test_same_size_same_time_other_bytes_is_409(served):
    root, col, client = served
    path = root / "pics" / "p2.jpg"
    item = _id_of(col, path)
    with _replaced(path):
        assert client.get(f"/media/{item}", headers=KEY).status_code == 409


def test_catalog_images_are_served_only_while_unchanged(served):
    root, _col, client = served
    assert client.get("/media/c0", headers=KEY).status_code == 200
    path = root / "pics" / "p0.jpg"
    with _replaced(path, "/etc/passwd"):
        assert client.get("/media/c0", headers=KEY).status_code == 409


def test_openapi_declares_the_error_answers(served):
    spec = served[2].get("/openapi.json").json()
    paths = spec["paths"]
    for route, method, codes in [("/search", "post", {"400", "401", "413", "503"}),
                                 ("/upsert", "post", {"400", "401", "413", "503"}),
                                 ("/delete", "post", {"400", "401", "503"}),
                                 ("/media/{item_id}", "get", {"401", "404", "409", "503"}),
                                 ("/thumbnail/{item_id}", "get", {"404", "409"}),
                                 ("/stats", "get", {"401", "503"})]:
        assert codes <= set(paths[route][method]["responses"]), route
    assert any(s.get("in") == "header" and s.get("name") == "X-API-Key"
               for s in spec["components"]["securitySchemes"].values())
