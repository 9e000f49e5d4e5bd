"""Structured filters on column arrays give exactly DuckDB's rows; cached per snapshot."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import mmsearch
from mmsearch.filters import cache_key, compile_filters, evaluate
from mmsearch.view import snapshot as snapshot_mod

N = 3000


@pytest.fixture(scope="module")
def table() -> pa.Table:
    rng = np.random.default_rng(7)
    null = rng.random(N) < 0.1

    def with_nulls(values):
        return [None if n else v for v, n in zip(values, null, strict=True)]

    return pa.table({
        "bucket": pa.array(rng.integers(0, 100, N), pa.int64()),
        "small": pa.array(rng.integers(-5, 5, N), pa.int8()),
        "price": pa.array(with_nulls(np.round(rng.random(N) * 100, 2).tolist()), pa.float64()),
        "brand": pa.array(with_nulls(rng.choice(["nike", "Nike", "acme", "zeta", ""], N)
                                     .tolist()), pa.string()),
        "sale": pa.array(with_nulls((rng.random(N) < 0.3).tolist()), pa.bool_()),
        "stock": pa.array(with_nulls(rng.integers(0, 50, N).tolist()), pa.int32()),
        "score": pa.array(rng.random(N), pa.float32()),
    })


def duck_rows(table: pa.Table, filters: dict) -> np.ndarray:
    sql, params = compile_filters(filters)
    con = duckdb.connect()
    items = table.append_column("_row", pa.array(np.arange(len(table)), pa.int64()))
    con.register("items", items)
    got = con.execute(f"SELECT _row FROM items WHERE {sql}", params).fetchnumpy()["_row"]
    return np.sort(np.asarray(got, dtype=np.int64))


CASES = [
    {"bucket": 7},
    {"bucket": {"eq": 7}},
    {"bucket": {"ne": 7}},
    {"bucket": {"lt": 10}},
    {"bucket": {"lte": 10, "gt": 3}},
    {"bucket": {"gte": 99.5}},
    {"bucket": {"lt": 10.5}},
    {"bucket": [1, 2, 3]},
    {"bucket": {"in": [5, 6.0]}},
    {"bucket": {"nin": [1, 2, 3]}},
    {"bucket": {"in": []}},
    {"bucket": {"nin": []}},
    {"bucket": {"between": [10, 20]}},
    {"small": {"gt": 300}},
    {"small": {"lt": -129}},
    {"small": {"in": [1, 1000]}},
    {"price": {"lt": 50}},
    {"price": {"between": [20.5, 30]}},
    {"price": None},
    {"price": {"ne": None}},
    {"price": {"ne": 50.0}},
    {"brand": "nike"},
    {"brand": ""},
    {"brand": {"in": ["nike", "acme", None]}},
    {"brand": {"nin": ["nike", "acme"]}},
    {"brand": {"nin": ["nike", None]}},
    {"brand": {"gt": "b"}},
    {"brand": {"ne": "nike"}},
    {"sale": True},
    {"sale": {"ne": True}},
    {"sale": None},
    {"stock": {"gte": 10}, "brand": {"in": ["Nike", "zeta"]}, "sale": False},
    {"stock": {"lt": 5}, "price": {"gt": 10}},
    {"stock": {"in": [3, 4.0, 4.5, 2**40]}},
    {"score": {"lt": 0.1}},
    {"score": {"in": [0.5, 1.0]}},
]


@pytest.mark.parametrize("filters", CASES, ids=[repr(c) for c in CASES])
def test_array_evaluation_matches_duckdb(table, filters):
    rows = evaluate(list(filters.items()), table)
    assert rows is not None, "a simple filter is evaluated without SQL"
    np.testing.assert_array_equal(rows, duck_rows(table, filters))


@pytest.mark.parametrize("filters", [
    {"bucket": "7"},                 # a string against a number column: DuckDB's casts decide
    {"brand": 5},                    # a number against a string column
    {"sale": 1},                     # an int against a bool column
    {"missing": 1},                  # unknown column: DuckDB names the columns in its error
    {"bucket": {"like": "x"}},       # unknown operator: compile_filters rejects it
    {"bucket": {"eq": float("nan")}},
])
def test_anything_unusual_is_left_to_duckdb(table, filters):
    assert evaluate(list(filters.items()), table) is None


def test_nan_in_a_float_column_is_left_to_duckdb():
    t = pa.table({"x": pa.array([1.0, float("nan"), 3.0])})
    assert evaluate([("x", {"gt": 2})], t) is None


def test_cache_keys_keep_value_types_apart():
    keys = {cache_key([("a", v)]) for v in (1, 1.0, "1", True)}
    assert len(keys) == 4
    assert cache_key([("a", 1), ("b", 2)]) == cache_key([("b", 2), ("a", 1)])
    assert cache_key([("a", {"in": {3, 1, 2}})]) == cache_key([("a", {"in": {2, 3, 1}})])


def _records(n: int, dim: int = 8) -> pa.Table:
    rng = np.random.default_rng(3)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return pa.table({"id": [f"r{i}" for i in range(n)], "bucket": np.arange(n) % 10,
                     "tag": [["a", "b", "c"][i % 3] for i in range(n)],
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), dim)})


def test_search_with_filters_equals_where_and_is_cached(tmp_path, monkeypatch):
    with mmsearch.open(tmp_path / "s") as col:
        col.upsert(_records(600))
        q = np.random.default_rng(1).standard_normal(8)
        calls = []
        real = snapshot_mod.evaluate
        monkeypatch.setattr(snapshot_mod, "evaluate",
                            lambda c, t: calls.append(c) or real(c, t))
        fast = col.search(vector=q, k=20, filters={"bucket": {"in": [1, 2]}, "tag": "a"})
        sql = col.search(vector=q, k=20, where="bucket IN (1, 2) AND tag = 'a'")
        assert [r.id for r in fast] == [r.id for r in sql] and len(fast) == 20
        again = col.search(vector=q, k=5, filters={"tag": "a", "bucket": {"in": [2, 1]}})
        assert [r.id for r in again] == [r.id for r in fast[:5]]
        assert len(calls) == 1, "the second search reused the cached rows"
        col.upsert(_records(601)[600:])  # a new snapshot starts its own cache
        col.search(vector=q, k=5, filters={"tag": "a", "bucket": {"in": [2, 1]}})
        assert len(calls) == 2
        # modality rides along as one more clause
        mod = col.search(vector=q, k=5, filters={"bucket": 1}, modality="text")
        assert [r.id for r in mod] == [r.id for r in col.search(
            vector=q, k=5, where="bucket = 1 AND modality = 'text'")]


def test_the_cache_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot_mod, "FILTER_CACHE_BYTES", 3 * 8 * 100)  # three 100-row sets
    with mmsearch.open(tmp_path / "s") as col:
        col.upsert(_records(1000))
        snap = col.snapshot()
        for b in range(10):
            assert len(snap.filter_rows([("bucket", b)])) == 100
        assert len(snap._filter_cache) == 3 and snap._filter_cache_bytes == 2400
        assert list(snap._filter_cache) == [cache_key([("bucket", b)]) for b in (7, 8, 9)]
