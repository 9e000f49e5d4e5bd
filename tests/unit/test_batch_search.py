"""search_batch answers exactly what one search per query answers (texts, vectors, both,
with filters), embedding all texts in one encoder call; and POST /search/batch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import mmsearch
from mmsearch.errors import UsageError


@pytest.fixture(scope="module")
def col(tmp_path_factory, tiny_spec):
    c = mmsearch.open(tmp_path_factory.mktemp("batch") / "s", model=tiny_spec)
    dim = c.encoder.dim
    rng = np.random.default_rng(5)
    n = 300
    v = rng.standard_normal((n, dim)).astype(np.float32)
    c.upsert(pa.table({"id": [f"r{i}" for i in range(n)], "bucket": np.arange(n) % 7,
                       "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)),
                                                                   dim)}))
    c.upsert([{"id": f"t{i}", "text": t, "bucket": i % 7} for i, t in enumerate(
        ["a red shoe", "a blue cat", "the dog on a sofa", "a photo of a man", "red and blue"])])
    yield c
    c.close()


def same(a, b):
    assert [r.id for r in a] == [r.id for r in b]
    assert [r.score for r in a] == pytest.approx([r.score for r in b], abs=1e-5)


def test_vectors_batch_equals_single_searches(col):
    q = np.random.default_rng(9).standard_normal((6, col.encoder.dim)).astype(np.float32)
    for opts in ({"k": 5}, {"k": 8, "filters": {"bucket": {"in": [1, 3]}}},
                 {"k": 4, "where": "bucket < 3", "offset": 2}):
        batch = col.search_batch(vectors=q, **opts)
        assert len(batch) == len(q)
        for got, v in zip(batch, q, strict=True):
            same(got, col.search(vector=v, **opts))


def test_texts_batch_equals_single_and_encodes_once(col, monkeypatch):
    texts = ["red shoe", "a cat -blue", None, "dog on a sofa"]
    q = np.random.default_rng(3).standard_normal((4, col.encoder.dim)).astype(np.float32)
    single = [col.search(text=t, vector=None if t else q[i], k=5)
              for i, t in enumerate(texts)]
    calls = []
    real = col.encoder.encode_texts
    monkeypatch.setattr(col.encoder, "encode_texts", lambda ts: calls.append(list(ts)) or
                        real(ts))
    batch = col.search_batch(texts=texts, vectors=[None if t else q[i] for i, t in
                                                   enumerate(texts)], k=5)
    for got, want in zip(batch, single, strict=True):
        same(got, want)
    assert len(calls) == 1 and sorted(calls[0]) == ["a cat", "blue", "dog on a sofa",
                                                    "red shoe"]


def test_bad_batches_are_refused(col):
    with pytest.raises(UsageError, match="2 texts but 3 vectors"):
        col.search_batch(texts=["a", "b"], vectors=np.zeros((3, col.encoder.dim)))
    with pytest.raises(UsageError, match="not text="):
        col.search_batch(texts=["a"], text="b")
    assert col.search_batch(texts=[]) == []


def test_http_batch_endpoint(col):
    from fastapi.testclient import TestClient

    from mmsearch.serve.app import Limits, create_app

    client = TestClient(create_app(col, limits=Limits(max_batch=3)))
    q = np.random.default_rng(4).standard_normal((2, col.encoder.dim)).round(4).tolist()
    out = client.post("/search/batch", json={
        "queries": [{"text": "red shoe"}, {"vector": q[0]}, {"text": "cat", "vector": q[1]}],
        "k": 3, "filters": {"bucket": {"lt": 5}}})
    assert out.status_code == 200, out.text
    lists = out.json()["results"]
    want = [col.search(text="red shoe", k=3, filters={"bucket": {"lt": 5}}),
            col.search(vector=q[0], k=3, filters={"bucket": {"lt": 5}}),
            col.search(text="cat", vector=q[1], k=3, filters={"bucket": {"lt": 5}})]
    assert [[r["id"] for r in hits] for hits in lists] == [[r.id for r in w] for w in want]
    too_many = client.post("/search/batch", json={"queries": [{"text": "a"}] * 4})
    assert too_many.status_code == 413 and "batch limit of 3" in too_many.json()["detail"]
