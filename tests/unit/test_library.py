"""Library API for backends: facets, Arrow/pandas results, injection-safe filters."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import mmsearch
from mmsearch.errors import UsageError


@pytest.fixture
def shop(tmp_path):
    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(60, 16)).astype(np.float32)
    brands = ["acme", "zeta", "nova"]
    records = [{"id": f"p{i}", "vector": vecs[i], "brand": brands[i % 3],
                "price": float(i), "category": "shoes" if i < 20 else "bags"}
               for i in range(60)]
    col = mmsearch.open(tmp_path / "s")
    col.upsert(records)
    yield col, vecs
    col.close()


def test_facets_over_filters_and_over_query_results(shop):
    col, vecs = shop
    all_items = col.facets(["brand", "category"])
    assert all_items["brand"] == [("acme", 20), ("nova", 20), ("zeta", 20)]
    assert all_items["category"] == [("bags", 40), ("shoes", 20)]
    cheap = col.facets("category", filters={"price": {"lt": 25}})
    assert cheap == {"category": [("shoes", 20), ("bags", 5)]}
    hits = col.search(vector=vecs[0], k=10, filters={"category": "bags"})
    per_query = col.facets("brand", vector=vecs[0], k=10, filters={"category": "bags"})
    expected: dict[str, int] = {}
    for h in hits:
        expected[h.brand] = expected.get(h.brand, 0) + 1
    assert dict(per_query["brand"]) == expected and sum(expected.values()) == 10
    with pytest.raises(UsageError, match="bad facet"):
        col.facets("nope")


def test_results_as_arrow_and_pandas(shop):
    col, vecs = shop
    hits = col.search(vector=vecs[5], k=4)
    table = mmsearch.results_to_arrow(hits)
    assert table.column_names[:4] == ["id", "path", "modality", "score"]
    assert table.column("id").to_pylist() == [h.id for h in hits]
    assert table.schema.field("price").type == pa.float64()
    frame = mmsearch.results_to_pandas(hits)
    assert list(frame["brand"]) == [h.brand for h in hits] and len(frame) == 4
    assert mmsearch.results_to_arrow([]).num_rows == 0


@pytest.mark.parametrize("evil", [
    "acme' OR '1'='1",
    "acme'; DROP TABLE items; --",
    "x\" OR TRUE OR \"",
])
def test_filter_values_cannot_inject_sql(shop, evil):
    col, vecs = shop
    assert col.search(vector=vecs[0], k=60, filters={"brand": evil}) == []
    assert col.search(vector=vecs[0], k=60, filters={"brand": {"in": [evil, "zeta"]}})
    assert all(h.brand == "zeta" for h in col.search(vector=vecs[0], k=60,
                                                     filters={"brand": {"in": [evil, "zeta"]}}))
    assert col.facets("brand", filters={"brand": evil}) == {"brand": []}
    # a hostile column name is quoted as one identifier: an unknown column, not SQL
    with pytest.raises(UsageError, match="bad filter"):
        col.search(vector=vecs[0], k=5, filters={'brand" = brand OR "1': "x"})
    assert len(col) == 60
