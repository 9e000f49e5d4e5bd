"""Recall targeting on real image embeddings: Flickr8k photos through mmsearch-lite.

The third vector set of tests/unit/test_recall_tuning.py (the synthetic ones are there).
Encoding runs a few images/s on a CPU, so the embeddings are computed once and cached
(benchmarks/vector_sets.py: $MMSEARCH_BENCH_CACHE or ~/.cache/mmsearch-bench).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pyarrow as pa
import pytest
from helpers import REPO, SHARED_DATA

import mmsearch

sys.path.insert(0, str(REPO))
from benchmarks import vector_sets as vs

IMAGES = SHARED_DATA / "flickr8k_train224" / "images"
N = 1000  # 800 stored, 200 fresh queries


@pytest.mark.skipif(not IMAGES.is_dir(),
                    reason=f"Flickr8k training images not found at {IMAGES} (clone beside shared/)")
def test_recall_target_holds_on_real_image_embeddings(tmp_path):
    vecs = vs.lite_images(IMAGES, N)
    stored, queries = vecs[:800], vecs[800:]
    path = tmp_path / "store"
    params = {"threshold": 500, "m": 32, "train_per_list": 20}
    with mmsearch.open(path, index_params=params) as col:
        col.upsert(pa.table({"id": [f"i{i}" for i in range(len(stored))],
                             "vector": pa.FixedSizeListArray.from_arrays(
                                 pa.array(stored.reshape(-1)), stored.shape[1])}))
        info = col.info()["index_params"]
        _, rows = col.snapshot().index.search(queries, 10)
    t = json.loads((path / "manifest.json").read_text())["ann"]["tuning"]
    assert info["type"] == "ivfpq" and t["met"] and t["recall_at_10"] >= 0.95
    assert (info["nprobe"], info["rerank"]) == (t["nprobe"], t["rerank"])
    truth = np.argsort(-(queries @ stored.T), axis=1)[:, :10]
    fresh = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, truth, strict=True)])
    assert fresh >= 0.95 - 0.03, (fresh, t)
