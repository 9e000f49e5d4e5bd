"""Acceptance on real data: a 100-product slice of ../shared/data/fashion_products as a
catalog with the offline model mmsearch-lite (the full 500: benchmarks/catalog_fashion.py).

Every structured filter combination returns exactly the products a pandas reference
selects, in the order of the unfiltered ranking; each product photo, re-encoded as JPEG
and resized, finds its own product first.
"""

from __future__ import annotations

import io
import itertools

import pytest
import torch
from PIL import Image

pd = pytest.importorskip("pandas")

from helpers import SHARED_DATA  # noqa: E402

import mmsearch  # noqa: E402

DATA = SHARED_DATA / "fashion_products"
N = 100

pytestmark = pytest.mark.skipif(not (DATA / "products.csv").is_file(),
                                reason=f"{DATA} is absent (shared data not checked out)")

# (filters, the same selection in pandas)
COMBOS = [
    ({"gender": "Men"}, lambda d: d.gender == "Men"),
    ({"gender": "Women", "master_category": {"in": ["Apparel", "Footwear"]}},
     lambda d: (d.gender == "Women") & d.master_category.isin(["Apparel", "Footwear"])),
    ({"year": {"gte": 2012}}, lambda d: d.year >= 2012),
    ({"base_colour": "Black", "season": {"ne": "Summer"}},
     lambda d: (d.base_colour == "Black") & (d.season != "Summer")),
    ({"year": {"between": [2010, 2013]}, "usage": "Casual", "gender": {"nin": ["Men"]}},
     lambda d: d.year.between(2010, 2013) & (d.usage == "Casual") & (d.gender != "Men")),
    ({"article_type": {"in": ["Tshirts", "Casual Shoes", "Watches"]}, "year": {"lt": 2016}},
     lambda d: d.article_type.isin(["Tshirts", "Casual Shoes", "Watches"]) & (d.year < 2016)),
    ({"master_category": "Accessories", "base_colour": {"in": ["Black", "Brown"]}},
     lambda d: (d.master_category == "Accessories") & d.base_colour.isin(["Black", "Brown"])),
    ({"season": "Winter", "usage": {"ne": "Casual"}, "year": {"gt": 2011}},
     lambda d: (d.season == "Winter") & (d.usage != "Casual") & (d.year > 2011)),
    ({"gender": "Girls"}, lambda d: d.gender == "Girls"),
    ({"title": "no such title' OR '1'='1"}, lambda d: d.title == "no such title' OR '1'='1"),
]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion")
    frame = pd.read_csv(DATA / "products.csv").head(N)
    frame.to_csv(root / "products.csv", index=False)
    (root / "images").symlink_to(DATA / "images")  # image paths are relative to the catalog
    col = mmsearch.open(root / "store", model="mmsearch-lite", device="cpu")
    report = col.index_catalog(root / "products.csv", id_col="id", image_col="file",
                               text_cols=["title"])
    assert (report.added, len(report.failed), len(col)) == (N, 0, N)
    yield frame, col
    col.close()


@pytest.mark.parametrize("query", ["black running shoes", "women handbag", "blue shirt"])
def test_filter_combinations_match_pandas(shop, query):
    frame, col = shop
    ranking = [h.id for h in col.search(text=query, k=N)]
    assert len(ranking) == N
    for filters, select in COMBOS:
        hits = col.search(text=query, k=N, filters=filters)
        wanted = set(frame[select(frame)].id.astype(str))
        assert {h.id for h in hits} == wanted, filters
        assert [h.id for h in hits] == [i for i in ranking if i in wanted], filters
        assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    # the stored metadata keeps its types
    hit = col.search(text=query, k=1, filters={"year": {"gte": 2011}})[0]
    assert isinstance(hit.year, int) and isinstance(hit.title, str)


def test_image_finds_its_product_first(shop):
    frame, col = shop
    encoder = col.encoder
    queries = []
    for file in frame.file:
        image = Image.open(DATA / file).convert("RGB").resize((180, 180))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=70)
        queries.append(encoder.preprocess(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    vectors = encoder.encode_images(torch.stack(queries))  # one batch: the slow part
    found = sum(col.search(vector=v, k=1)[0].id == item
                for v, item in zip(vectors, frame.id.astype(str), strict=True))
    assert found / len(frame) >= 0.99, found
