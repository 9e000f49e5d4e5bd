"""The short way for `POST /search` (mmsearch.serve.fast_search): valid searches answer as
FastAPI's way does, without it; every other request gets FastAPI's own answer."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the `serve` extra is not installed")
from fastapi.testclient import TestClient

import mmsearch
from mmsearch.serve.app import Limits, create_app

DIM = 16
KEY = {"X-API-Key": "k"}


@pytest.fixture(scope="module")
def col(tmp_path_factory):
    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(60, DIM)).astype(np.float32)
    records = [{"id": f"p{i}", "vector": v.tolist(), "brand": f"b{i % 3}", "price": float(i)}
               for i, v in enumerate(vecs)]
    with mmsearch.open(tmp_path_factory.mktemp("fast") / "store") as c:
        c.upsert(records)
    return mmsearch.open(c.path)


def _client(col, fast: bool, **kw) -> tuple[TestClient, list[str]]:
    """A client of a fresh app, and the paths FastAPI's own way was asked for."""
    app = create_app(col, **kw)
    seen: list[str] = []
    full = app.full

    async def counted(scope, receive, send):
        if scope["type"] == "http":
            seen.append(scope["path"])
        await full(scope, receive, send)

    app.fast_search.app = counted
    if not fast:
        app.fast_search = None
    return TestClient(app), seen


def _answer(res) -> dict:
    out = res.json()
    out.pop("took_ms", None)
    return out


QUERIES = [
    {"vector": [0.1] * DIM, "k": 5},
    {"vector": [(-1) ** i * 0.3 for i in range(DIM)], "k": 7, "filters": {"brand": "b1"}},
    {"vector": [0.2] * DIM, "k": 4, "filters": {"price": {"lt": 30}}, "facets": ["brand"]},
    {"vector": [0.5] * DIM, "k": 3, "offset": 2},
]


@pytest.mark.parametrize("body", QUERIES)
def test_a_valid_search_takes_the_short_way_and_answers_the_same(col, body):
    fast, seen = _client(col, fast=True)
    slow, _ = _client(col, fast=False)
    a, b = fast.post("/search", json=body), slow.post("/search", json=body)
    assert a.status_code == b.status_code == 200
    assert seen == []  # FastAPI's way was not asked
    assert _answer(a) == _answer(b)
    assert [r["id"] for r in a.json()["results"]] == [
        h.id for h in col.search(vector=body["vector"], k=body["k"],
                                 offset=body.get("offset", 0), filters=body.get("filters"))]
    assert a.headers["content-type"] == "application/json"


BAD = [
    ({"vector": [0.1] * DIM, "k": 0}, 422),  # schema
    ({"vector": [0.1] * DIM, "k": 5000}, 400),  # over the server's max_k
    ({"vector": [0.1] * DIM, "filters": {"nope": 1}}, 400),  # unknown column
    ({"vector": [0.1] * (DIM + 1)}, 400),  # wrong dimension
    ({"k": 3, "unknown_option": 1}, 422),
]


@pytest.mark.parametrize(("body", "status"), BAD)
def test_a_failing_search_gets_fastapis_own_answer(col, body, status):
    fast, seen = _client(col, fast=True)
    slow, _ = _client(col, fast=False)
    a, b = fast.post("/search", json=body), slow.post("/search", json=body)
    assert a.status_code == b.status_code == status, a.text
    assert a.json() == b.json()
    assert seen == ["/search"]


def test_malformed_json_and_other_content_types_go_the_full_way(col):
    fast, seen = _client(col, fast=True)
    res = fast.post("/search", content=b'{"vector": [0.1,', headers={
        "content-type": "application/json"})
    assert res.status_code == 422
    res = fast.post("/search", content=json.dumps({"vector": [0.1] * DIM}).encode(),
                    headers={"content-type": "text/plain"})
    assert res.status_code in (200, 415, 422)
    assert seen == ["/search", "/search"]


def test_the_api_key_is_checked_on_the_short_way(col):
    fast, seen = _client(col, fast=True, api_key="k")
    body = {"vector": [0.1] * DIM, "k": 2}
    assert fast.post("/search", json=body).status_code == 401
    assert fast.post("/search", json=body, headers={"X-API-Key": "kk"}).status_code == 401
    assert seen == ["/search", "/search"]
    ok = fast.post("/search", json=body, headers=KEY)
    assert ok.status_code == 200 and len(ok.json()["results"]) == 2
    assert seen == ["/search", "/search"]


def test_a_body_over_the_limit_is_refused_with_the_limit_named(col):
    fast, seen = _client(col, fast=True, limits=Limits(max_query_body_bytes=2000))
    body = {"vector": [0.123456789] * 400}
    res = fast.post("/search", json=body)
    assert res.status_code == 413 and res.json()["limit"] == "max_query_body_bytes"
    assert seen == ["/search"]


def test_other_routes_are_untouched(col):
    fast, seen = _client(col, fast=True)
    assert fast.get("/health").json()["status"] == "ok"
    assert fast.post("/search/batch", json={"queries": [{"vector": [0.1] * DIM}],
                                            "k": 2}).status_code == 200
    assert seen == ["/health", "/search/batch"]
