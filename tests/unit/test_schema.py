"""A schema per store: types fixed by the first write (or declared), writes that do not fit
refused whole before anything is committed, records merged by name, safe widening."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import mmsearch
from mmsearch.errors import SchemaError, UsageError


def _vec(seed: int, d: int = 8) -> list[float]:
    v = np.random.default_rng(seed).normal(size=d)
    return (v / np.linalg.norm(v)).tolist()


def _store(tmp_path, n: int = 4):
    col = mmsearch.open(tmp_path / "s")
    col.upsert([{"id": f"p{i}", "vector": _vec(i), "price": 10 * i + 1, "brand": "acme"}
                for i in range(n)])
    return col


def _still_works(col, n: int = 4) -> None:
    """Everything a broken store used to fail at: search, filters, stats, delete, reopen."""
    assert len(col) == n
    assert col.search(vector=_vec(0), k=2)[0].id == "p0"
    assert {h.id for h in col.search(vector=_vec(0), k=10, filters={"price": {"lt": 15}})} \
        == {"p0", "p1"}
    assert col.info()["items"] == n
    fresh = mmsearch.open(col.path)
    assert len(fresh) == n and fresh.search(vector=_vec(1), k=1)[0].id == "p1"


@pytest.mark.parametrize("record", [
    {"price": "cheap"},                    # a string into a number column
    {"price": {"amount": 3}},              # a dict into a scalar column
    {"price": [1, 2]},                     # a list into a scalar column
    {"width": "wide"},                     # core columns have fixed types
    {"indexed_at": "yesterday"},
    {"start_s": "soon"},
    {"modality": 5},
])
def test_a_write_that_does_not_fit_is_refused_whole(tmp_path, record):
    col = _store(tmp_path)
    generation = col.info()["generation"]
    column = next(iter(record))
    with pytest.raises(SchemaError, match=column) as e:
        col.upsert([{"id": "ok", "vector": _vec(9)},
                    {"id": "evil", "vector": _vec(10), **record}])
    assert "expected" in str(e.value) and "given" in str(e.value)
    assert col.info()["generation"] == generation        # nothing committed
    _still_works(col)


def test_mixed_types_across_records_are_refused_naming_the_column(tmp_path):
    col = _store(tmp_path)
    with pytest.raises(UsageError, match="'x'"):
        col.upsert([{"id": "a", "vector": _vec(5), "x": 1}, {"id": "b", "vector": _vec(6),
                                                             "x": "s"}])
    _still_works(col)


@pytest.mark.parametrize("name", ["_ROW", "_row", "KEY", "Mtime_ns", "row_hash"])
def test_internal_column_names_are_reserved_in_any_case(tmp_path, name):
    col = _store(tmp_path)
    with pytest.raises(UsageError, match="reserved"):
        col.upsert([{"id": "a", "vector": _vec(5), name: 1}])
    _still_works(col)


def test_columns_differing_only_in_case_are_refused(tmp_path):
    col = _store(tmp_path)
    with pytest.raises(UsageError, match="Price"):
        col.upsert([{"id": "a", "vector": _vec(5), "Price": 1}])
    _still_works(col)


def test_safe_widening_is_allowed_and_recorded(tmp_path):
    col = _store(tmp_path)
    col.upsert([{"id": "f", "vector": _vec(7), "price": 2.5, "colour": "red"}])
    schema = col.schema
    assert schema.field("price").type == pa.float64()
    assert schema.field("colour").type == pa.string()
    changes = col.schema_changes
    assert {"column": "price", "from": "int64", "to": "double"} in [
        {k: c[k] for k in ("column", "from", "to")} for c in changes]
    assert any(c["column"] == "colour" and c["from"] is None for c in changes)
    hits = col.search(vector=_vec(7), k=10, filters={"price": {"lt": 5}})
    assert {h.id for h in hits} == {"p0", "f"}
    assert mmsearch.open(col.path).search(vector=_vec(7), k=1)[0].price == 2.5


def test_declared_schema_fixes_types_before_the_first_write(tmp_path):
    col = mmsearch.open(tmp_path / "s", schema={"price": "double", "stock": pa.int32()})
    col.upsert([{"id": "a", "vector": _vec(1), "price": 3, "stock": 4}])
    assert col.schema.field("price").type == pa.float64()
    assert col.schema.field("stock").type == pa.int32()
    with pytest.raises(SchemaError, match="stock"):
        col.upsert([{"id": "b", "vector": _vec(2), "stock": "many"}])
    # a declaration that contradicts the store is refused at open
    with pytest.raises(SchemaError, match="price"):
        mmsearch.open(tmp_path / "s", schema={"price": "string"})


def test_records_with_different_keys_are_merged_by_name(tmp_path):
    col = mmsearch.open(tmp_path / "s")
    col.upsert([{"id": "a", "vector": _vec(1), "brand": "acme"},
                {"id": "b", "vector": _vec(2), "price": 5.0, "colour": "red"}])
    b = col.search(vector=_vec(2), k=1)[0]
    assert b.id == "b" and b.price == 5.0 and b.colour == "red"
    a = col.search(vector=_vec(1), k=1)[0]
    assert a.id == "a" and a.brand == "acme" and a.metadata.get("price") is None


def test_each_record_keeps_its_own_vector_text_or_path(tmp_path, tiny_spec, photos):
    col = mmsearch.open(tmp_path / "s", model=tiny_spec)
    dim = col.encoder.dim
    own = np.random.default_rng(3).normal(size=dim)
    own = own / np.linalg.norm(own)
    photo = str(photos / "img1.jpg")
    col.upsert([{"id": "c", "text": "a dog"}, {"id": "d", "vector": own.tolist()},
                {"id": "e", "path": photo}])
    snap = col.snapshot()
    rows = {r["id"]: i for i, r in enumerate(snap.table.to_pylist())}
    vectors = snap.vectors.to_array()
    np.testing.assert_allclose(vectors[rows["d"]], own, atol=1e-5)
    np.testing.assert_allclose(vectors[rows["c"]], col.encoder.encode_texts(["a dog"])[0],
                               atol=1e-5)
    assert not np.allclose(vectors[rows["d"]], col.encoder.encode_texts(["None"])[0],
                           atol=1e-3)
    from mmsearch.encoders.media import embed_image

    np.testing.assert_allclose(vectors[rows["e"]], embed_image(col.encoder, photo)[0], atol=1e-5)
    table = {r["id"]: r for r in snap.table.to_pylist()}
    assert table["c"]["modality"] == "text" and table["c"]["channel"] == "text"
    assert table["d"]["modality"] == "image" and table["e"]["path"] == photo


def test_a_record_with_nothing_to_embed_is_named(tmp_path):
    col = _store(tmp_path)
    with pytest.raises(UsageError, match="'nothing'"):
        col.upsert([{"id": "ok", "vector": _vec(9)}, {"id": "nothing", "price": 3}])
    _still_works(col)


def test_http_upsert_of_a_bad_type_is_400_and_the_store_keeps_working(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mmsearch.serve import create_app

    col = _store(tmp_path)
    client = TestClient(create_app(col))
    r = client.post("/upsert", json={"records": [{"id": "evil", "vector": _vec(9),
                                                  "price": "cheap"}]})
    assert r.status_code == 400, r.text
    assert "price" in r.json()["detail"]
    assert client.post("/search", json={"vector": _vec(0), "k": 2}).status_code == 200
    assert client.get("/stats").status_code == 200
    assert client.post("/delete", json={"ids": ["p3"]}).json()["rows"] == 1
    _still_works(col, 3)
