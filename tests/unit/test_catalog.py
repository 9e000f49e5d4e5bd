"""Catalog ingestion: CSV/Parquet/JSONL, two rows per product, upsert by content, report."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_photo

import mmsearch
from mmsearch.errors import UsageError


def _catalog(folder, n=6):
    """A CSV catalog with images in a sub-folder (relative paths) and typed columns."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["sku,image,title,description,price,brand,in_stock"]
    for i in range(n):
        make_photo(folder / "img" / f"p{i}.jpg", seed=100 + i)
        lines.append(f"{i},img/p{i}.jpg,Product {i},A fine thing number {i},{10 + i}.5,"
                     f"{'acme' if i % 2 else 'zeta'},{'true' if i % 3 else 'false'}")
    path = folder / "catalog.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(col):
    snap = col.snapshot()
    return snap.sql("SELECT id, channel, modality, path IS NOT NULL FROM items "
                    "ORDER BY id, channel").fetchall()


def test_catalog_two_rows_per_product_types_kept_and_resync(tmp_path, tiny_spec):
    cat = _catalog(tmp_path / "shop")
    with mmsearch.open(tmp_path / "s", model=tiny_spec) as col:
        report = col.index_catalog(cat, id_col="sku", image_col="image",
                                   text_cols=["title", "description"])
        assert report.to_dict()["added"] == 6 and report.rows_written == 12
        assert not report.failed
        rows = _rows(col)
        assert len(rows) == 12 and len(col) == 6
        assert rows[0] == ("0", "text", "image", True) and rows[1] == ("0", "visual", "image",
                                                                         True)
        snap = col.snapshot()
        types = dict(zip(snap.table.column_names, snap.table.schema.types, strict=True))
        assert types["price"] == pa.float64() and types["in_stock"] == pa.bool_()
        assert "image" not in types and "sku" not in types
        hits = col.search(image=tmp_path / "shop" / "img" / "p3.jpg", k=2,
                          filters={"price": {"lt": 100}})
        assert hits[0].id == "3" and hits[0].price == 13.5 and "row_hash" not in hits[0].to_dict()

        # unchanged catalog: nothing embedded again
        again = col.index_catalog(cat, id_col="sku", image_col="image",
                                  text_cols=["title", "description"])
        assert (again.added, again.updated, again.unchanged, again.rows_written) == (0, 0, 6, 0)

        # edit one row, touch one image, drop one row, add a URL and a missing image
        lines = cat.read_text().splitlines()
        lines[1] = lines[1].replace("Product 0", "Renamed 0")
        del lines[3]  # sku 2
        lines.append("7,https://example.com/x.jpg,Remote,,1.0,acme,true")
        lines.append("8,img/nope.jpg,Missing,,1.0,acme,true")
        cat.write_text("\n".join(lines) + "\n")
        img = tmp_path / "shop" / "img" / "p4.jpg"
        make_photo(img, seed=999)
        os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))
        sync = col.index_catalog(cat, id_col="sku", image_col="image",
                                 text_cols=["title", "description"], delete_missing=True)
        assert (sync.added, sync.updated, sync.unchanged, sync.deleted) == (0, 2, 3, 1)
        failed = dict(sync.failed)
        assert "URL" in failed["7"] and "No such file" in failed["8"]
        assert len(col) == 5 and not col.search(text="x", k=10, filters={"id": "2"})
        assert col.search(text="x", k=1, filters={"id": "0"})[0].title == "Renamed 0"


def test_bad_image_is_reported_rest_continue_and_text_only_products(tmp_path, tiny_spec):
    shop = tmp_path / "shop"
    make_photo(shop / "ok.jpg", seed=1)
    (shop / "bad.jpg").write_bytes(b"not an image at all")
    rows = [{"id": "a", "img": "ok.jpg", "title": "red shoe", "size": 42},
            {"id": "b", "img": "bad.jpg", "title": "blue bag", "size": 1},
            {"id": "c", "img": None, "title": "green hat", "size": 3}]
    path = shop / "cat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with mmsearch.open(tmp_path / "s", model=tiny_spec) as col:
        report = col.index_catalog(path, image_col="img", text_cols=["title"])
        assert report.added == 2 and [f[0] for f in report.failed] == ["b"]
        assert _rows(col) == [("a", "text", "image", True), ("a", "visual", "image", True),
                              ("c", "text", "text", False)]


def test_parquet_catalog_and_upsert_products_match(tmp_path, tiny_spec):
    shop = tmp_path / "shop"
    for i in range(3):
        make_photo(shop / f"{i}.png", seed=i)
    table = pa.table({"id": [1, 2, 3], "pic": [f"{i}.png" for i in range(3)],
                      "title": ["a", "b", "c"], "year": pa.array([2020, 2021, 2022], pa.int16())})
    pq.write_table(table, shop / "cat.parquet")
    with mmsearch.open(tmp_path / "s1", model=tiny_spec) as col:
        col.index_catalog(shop / "cat.parquet", image_col="pic", text_cols=["title"])
        via_catalog = col.snapshot()
        assert via_catalog.table.schema.field("year").type == pa.int16()
    records = [{"id": str(i + 1), "path": str(shop / f"{i}.png"), "text": t}
               for i, t in enumerate("abc")]
    with mmsearch.open(tmp_path / "s2", model=tiny_spec) as col:
        assert col.upsert(records) == 6
        assert col.upsert(records) == 0  # unchanged: skipped
        via_upsert = col.snapshot()
        assert sorted(via_upsert.sql("SELECT id, channel FROM items").fetchall()) == sorted(
            via_catalog.sql("SELECT id, channel FROM items").fetchall())
        with pytest.raises(UsageError, match="nothing written"):
            col.upsert([{"id": "9", "path": str(shop / "missing.png"), "text": "x"}])
        assert len(col) == 3


def test_catalog_errors_are_clear(tmp_path, tiny_spec):
    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "c.csv").write_text("id,title,modality\n1,a,x\n")
    (shop / "d.csv").write_text("id,title\n1,a\n1,b\n")
    with mmsearch.open(tmp_path / "s", model=tiny_spec) as col:
        with pytest.raises(UsageError, match="modality"):
            col.index_catalog(shop / "c.csv", text_cols=["title"])
        with pytest.raises(UsageError, match="duplicate ids"):
            col.index_catalog(shop / "d.csv", text_cols=["title"])
        with pytest.raises(UsageError, match="no column 'nope'"):
            col.index_catalog(shop / "d.csv", text_cols=["nope"])
        with pytest.raises(UsageError, match="not a catalog"):
            col.index_catalog(shop / "c.txt", text_cols=["title"])


def test_cli_index_catalog(tmp_path, tiny_spec, cli):
    cat = _catalog(tmp_path / "shop", n=3)
    store = tmp_path / "s"
    res = cli("index", cat, "--store", store, "--model", tiny_spec, "--id-col", "sku",
              "--image-col", "image", "--text-col", "title", "--text-col", "description")
    assert res.exit_code == 0, res.stderr
    assert "3 added, 0 updated, 0 unchanged, 0 deleted, 0 failed" in res.stderr
    res = cli("query", "Product", "--store", store, "--json", "--where", "brand = 'acme'")
    assert res.exit_code == 0 and [json.loads(x)["id"] for x in res.stdout.splitlines()] == ["1"]
    res = cli("index", tmp_path / "shop" / "img", "--store", store, "--image-col", "image")
    assert res.exit_code == 2 and "need a catalog file" in res.stderr
    res = cli("index", cat, "--store", store, "--id-col", "nope", "--text-col", "title")
    assert res.exit_code == 2 and "no column 'nope'" in res.stderr
