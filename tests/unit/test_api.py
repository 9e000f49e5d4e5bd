"""The Python API: index, upsert (vectors, pandas, Arrow), delete, search, filters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import mmsearch
from mmsearch.errors import ModelMismatchError, UsageError


def _unit(rng, n, d):
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_upsert_precomputed_vectors_without_any_model(tmp_path):
    rng = np.random.default_rng(0)
    vecs = _unit(rng, 50, 16)
    records = [{"id": f"p{i}", "vector": vecs[i], "price": float(i), "brand": "acme" if i % 2
                else "zeta"} for i in range(50)]
    with mmsearch.open(tmp_path / "s") as col:
        assert col.upsert(records) == 50
        assert len(col) == 50
        hits = col.search(vector=vecs[7], k=3)
        assert hits[0].id == "p7" and hits[0].similarity == pytest.approx(1.0, abs=1e-5)
        assert hits[0].price == 7.0 and hits[0].to_dict()["brand"] == "acme"
        with pytest.raises(UsageError, match="without a model"):
            col.search(text="shoes")
        with pytest.raises(ModelMismatchError, match="16-d"):
            col.search(vector=np.ones(8))
    # reopened from disk: same answers
    with mmsearch.open(tmp_path / "s") as col:
        assert [h.id for h in col.search(vector=vecs[7], k=3)] == [h.id for h in hits]


def test_upsert_replaces_by_id_and_delete_removes(tmp_path):
    rng = np.random.default_rng(1)
    vecs = _unit(rng, 20, 8)
    frame = pd.DataFrame({"id": [f"x{i}" for i in range(20)], "vector": list(vecs),
                          "stock": np.arange(20)})
    with mmsearch.open(tmp_path / "s") as col:
        col.upsert(frame)
        new = _unit(rng, 1, 8)[0]
        col.upsert([{"id": "x3", "vector": new, "stock": 999}])
        assert len(col) == 20
        hit = col.search(vector=new, k=1)[0]
        assert hit.id == "x3" and hit.stock == 999
        assert all(h.id != "x3" for h in col.search(vector=vecs[3], k=20) if h.similarity > 0.9999)
        assert col.delete(["x3", "x4", "missing"]) == 2
        assert len(col) == 18
        assert {"x3", "x4"}.isdisjoint(h.id for h in col.search(vector=vecs[4], k=20))


def test_arrow_fixed_size_list_fast_path_and_filters(tmp_path):
    rng = np.random.default_rng(2)
    n, d = 2000, 32
    vecs = _unit(rng, n, d)
    table = pa.table({
        "id": [str(i) for i in range(n)],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), d),
        "price": rng.uniform(1, 100, n), "category": rng.choice(["shoes", "bags", "hats"], n),
    })
    with mmsearch.open(tmp_path / "s") as col:
        col.upsert(table)
        q = vecs[0]
        price = table.column("price").to_numpy()
        cat = np.array(table.column("category").to_pylist())
        allowed = np.flatnonzero((price < 50) & np.isin(cat, ["shoes", "bags"]))
        expected = allowed[np.argsort(-(vecs[allowed] @ q))][:10]
        hits = col.search(vector=q, k=10, filters={"price": {"lt": 50},
                                                   "category": {"in": ["shoes", "bags"]}})
        assert [h.id for h in hits] == [str(i) for i in expected]
        # an injection attempt through a value is just a value that matches nothing
        evil = col.search(vector=q, k=10, filters={"category": "shoes' OR '1'='1"})
        assert evil == []
        # ... and through a column name, an unknown column
        with pytest.raises(UsageError, match="bad filter"):
            col.search(vector=q, k=10, filters={'price" > 0 OR "1': 1})


def test_records_validation_errors(tmp_path):
    with mmsearch.open(tmp_path / "s") as col:
        with pytest.raises(UsageError, match="id"):
            col.upsert([{"vector": [1.0, 0.0]}])
        with pytest.raises(UsageError, match="unique"):
            col.upsert([{"id": "a", "vector": [1.0, 0]}, {"id": "a", "vector": [0, 1.0]}])
        with pytest.raises(UsageError, match="same length"):
            col.upsert([{"id": "a", "vector": [1.0, 0]}, {"id": "b", "vector": [0, 1.0, 2.0]}])
        with pytest.raises(UsageError, match="non-zero"):
            col.upsert([{"id": "a", "vector": [0.0, 0.0]}])
        with pytest.raises(UsageError, match="reserved"):
            col.upsert([{"id": "a", "vector": [1.0, 0.0], "key": 1}])


def test_index_and_text_upsert_share_the_model_space(photos, tmp_path, tiny_spec):
    with mmsearch.open(tmp_path / "s", model=tiny_spec) as col:
        report = col.index([photos], progress=False)
        assert report.added == 8 and report.failed == 0
        col.upsert([{"id": "note-1", "text": "a red mug on a desk", "kind": "note"}])
        hit = col.search(text="a red mug on a desk", k=1)[0]
        assert hit.id == "note-1" and hit.modality == "text"
        assert hit.similarity == pytest.approx(1.0, abs=1e-5)
        images = col.search(text="a red mug on a desk", k=3, where="modality = 'image'")
        assert len(images) == 3 and all(h.modality == "image" for h in images)
        assert col.info()["modalities"] == {"image": 8, "text": 1}


def test_unchanged_files_are_not_decoded_and_renames_not_embedded(photos, tmp_path, tiny_spec,
                                                                   monkeypatch):
    from mmsearch.ingest import pipeline

    with mmsearch.open(tmp_path / "s", model=tiny_spec) as col:
        col.index([photos], progress=False)
        decoded, embedded = [], []
        real_decode = pipeline.decode_image
        monkeypatch.setattr(pipeline, "decode_image",
                            lambda data, *a, **kw: decoded.append(1) or real_decode(data, *a,
                                                                                    **kw))
        real_encode = col.encoder.encode_images
        monkeypatch.setattr(col.encoder, "encode_images",
                            lambda px: embedded.append(len(px)) or real_encode(px))
        assert col.index([photos], progress=False).unchanged == 8
        assert decoded == [] and embedded == []
        (photos / "img1.jpg").rename(photos / "renamed.jpg")
        report = col.index([photos], progress=False)
        assert (report.renamed, report.unchanged, report.added) == (1, 7, 0)
        assert decoded == [] and embedded == []


def test_model_mismatch_refused_at_open(photos, tmp_path, tiny_spec):
    with mmsearch.open(tmp_path / "s", model=tiny_spec) as col:
        col.index([photos], progress=False)
    with pytest.raises(ModelMismatchError, match="was built with"):
        mmsearch.open(tmp_path / "s", model="ViT-B-32:openai")
    # same model named through another copy of the files is accepted
    assert mmsearch.open(tmp_path / "s", model=tiny_spec).model.endswith(".pt")
