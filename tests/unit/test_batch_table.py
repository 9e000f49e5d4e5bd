"""search_batch(as_table=True): the same results as the result lists, as one Arrow table,
taken column by column from the store for plain vector batches."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

import mmsearch
from mmsearch.planner import lean
from mmsearch.results import batch_table

DIM = 24


@pytest.fixture(scope="module")
def col(tmp_path_factory):
    rng = np.random.default_rng(11)
    n = 400
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    v[7] = v[3]  # two items with the same vector: tied scores
    c = mmsearch.open(tmp_path_factory.mktemp("table") / "s")
    c.upsert(pa.table({
        "id": [f"p{i}" for i in range(n)],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), DIM),
        "bucket": np.arange(n) % 7,
        "brand": [None if i % 5 == 0 else f"b{i % 3}" for i in range(n)],
        "price": np.round(rng.uniform(1, 100, n), 2),
        "added": [dt.datetime(2026, 1, 1) + dt.timedelta(hours=i) for i in range(n)],
    }))
    c.upsert([{"id": "late", "vector": v[0].tolist(), "brand": "z"}])  # a second segment
    yield c
    c.close()


def rows_equal(got: pa.Table, want: pa.Table) -> None:
    if want.num_rows == 0:  # the lists hold no metadata names: the core columns come first
        assert got.num_rows == 0 and got.column_names[:len(want.column_names)] == \
            want.column_names
        return
    assert got.column_names == want.column_names
    a, b = got.to_pylist(), want.to_pylist()
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for name in x:
            if isinstance(y[name], float):
                assert x[name] == pytest.approx(y[name], abs=1e-5), name
            else:
                assert x[name] == y[name], name


QUERIES = np.random.default_rng(3).standard_normal((9, DIM)).astype(np.float32)
OPTIONS = [{"k": 5}, {"k": 8, "filters": {"bucket": {"in": [1, 3]}}},
           {"k": 4, "offset": 2}, {"k": 3, "filters": {"brand": "nobody"}},
           {"k": 1000}, {"k": 6, "filters": {"price": {"lt": 20}}}]


@pytest.mark.parametrize("opts", OPTIONS)
def test_table_equals_the_result_lists(col, opts):
    got = col.search_batch(vectors=QUERIES, as_table=True, **opts)
    lists = col.search_batch(vectors=QUERIES, **opts)
    rows_equal(got, batch_table(lists))
    assert got.column("query").to_pylist() == [qi for qi, hits in enumerate(lists)
                                               for _ in hits]


def test_plain_batches_never_make_results(col, monkeypatch):
    def no_lists(*_a, **_k):
        raise AssertionError("result lists were made")

    monkeypatch.setattr(lean, "search", no_lists)
    table = col.search_batch(vectors=QUERIES, k=5, as_table=True)
    assert table.num_rows == 5 * len(QUERIES)
    assert table.schema.field("added").type == pa.timestamp("us")  # the store's own types
    assert table.column("modality").to_pylist() == ["image"] * table.num_rows


def test_tied_scores_and_repeated_queries(col):
    snap = col.snapshot()
    tied = np.stack([snap.vectors.take(np.array([3]))[0]] * 3)
    got = col.search_batch(vectors=tied, k=4, as_table=True)
    rows_equal(got, batch_table(col.search_batch(vectors=tied, k=4)))
    assert {"p3", "p7"} <= set(got.column("id").to_pylist()[:4])


def test_other_queries_come_back_as_a_table_too(col, tiny_spec, tmp_path):
    mixed = mmsearch.open(tmp_path / "m", model=tiny_spec)
    dim = mixed.encoder.dim
    rng = np.random.default_rng(1)
    mixed.upsert([{"id": f"v{i}", "vector": rng.standard_normal(dim).tolist()}
                  for i in range(30)])
    mixed.upsert([{"id": "t0", "text": "a red shoe"}, {"id": "t1", "text": "a blue cat"}])
    q = rng.standard_normal((3, dim)).astype(np.float32)
    for kw in ({"vectors": q}, {"texts": ["red shoe", "cat", None], "vectors": [
            None, None, q[2]]}):
        rows_equal(mixed.search_batch(as_table=True, k=4, **kw),
                   batch_table(mixed.search_batch(k=4, **kw)))
    mixed.close()
