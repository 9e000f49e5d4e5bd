"""BLIP ITM reranking with a tiny random BLIP built in code: registry, batching, fusion of
the match probability with first-stage scores, video moments judged on their frame."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_blip import make_tiny_blip
from videos import make_video

import mmsearch
from mmsearch.errors import MmsearchError, UsageError
from mmsearch.ingest.video import read_frame
from mmsearch.rerank import load_reranker
from mmsearch.rerank.registry import reranker_names


@pytest.fixture(scope="session")
def blip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_blip(tmp_path_factory.mktemp("blip"))


@pytest.fixture
def media(photos: Path) -> Path:
    make_video(photos / "clip.mp4", [(50, 1.0), (51, 1.0), (52, 1.0)])
    return photos


def test_registry_loads_blip_from_a_local_folder_and_batches(blip_path):
    assert "blip" in reranker_names()
    reranker = load_reranker(f"blip:{blip_path}", "cpu")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8))
              for i in range(5)]
    scores = reranker.score("a red shoe", images)
    assert scores.dtype == np.float32 and scores.shape == (5,)
    assert ((scores > 0) & (scores < 1)).all() and np.ptp(scores) > 0.01
    reranker.batch_size = 2  # batched in pieces: same probabilities
    np.testing.assert_allclose(reranker.score("a red shoe", images), scores, atol=1e-5)
    assert not np.allclose(reranker.score("a dog", images), scores)
    assert reranker.score("a dog", []).shape == (0,)
    with pytest.raises(MmsearchError, match="cannot load the BLIP reranker"):
        load_reranker(f"blip:{blip_path / 'missing'}", "cpu")
    with pytest.raises(UsageError, match="unknown reranker"):
        load_reranker("nope")


def test_rerank_fuses_match_probability_with_first_stage(media, tmp_path, tiny_spec,
                                                         blip_path):
    spec = f"blip:{blip_path}"
    reranker = load_reranker(spec, "cpu")
    text = "a red shoe"
    with mmsearch.open(tmp_path / "s", model=tiny_spec) as col:
        col.index([media], progress=False)
        first = col.search(text=text, k=20, explain=True)
        reranked = col.search(text=text, k=20, rerank=4, reranker=spec, explain=True)
    assert {h.id for h in reranked} == {h.id for h in first}
    first_score = {h.id: h.score for h in first}
    top4 = {h.id for h in first[:4]}
    for hit in reranked:
        info = hit.explain.get("rerank")
        if hit.id not in top4:
            assert info is None and hit.score == pytest.approx(first_score[hit.id])
            continue
        image = (read_frame(hit.path, hit.start_s) if hit.modality == "video"
                 else Image.open(hit.path))
        p = float(reranker.score(text, [image])[0])
        assert info["prob"] == pytest.approx(p, abs=1e-3)
        assert info["first_stage"] == pytest.approx(first_score[hit.id], abs=1e-3)
        assert hit.score == pytest.approx(first_score[hit.id] + math.log(p / (1 - p)), abs=1e-3)
    assert [h.score for h in reranked] == sorted((h.score for h in reranked), reverse=True)


def test_video_moments_are_reranked_on_their_frame(media, tmp_path, tiny_spec, blip_path):
    spec = f"blip:{blip_path}"
    with mmsearch.open(tmp_path / "s", model=tiny_spec) as col:
        col.index([media], progress=False)
        hits = col.search(text="a dog", k=3, modality="video", rerank=3, reranker=spec,
                          explain=True)
    assert len(hits) == 1 and hits[0].start_s is not None
    frame = read_frame(hits[0].path, hits[0].start_s)
    p = float(load_reranker(spec, "cpu").score("a dog", [frame])[0])
    assert hits[0].explain["rerank"]["prob"] == pytest.approx(p, abs=1e-3)


def test_default_reranker_comes_from_the_environment(photos, tmp_path, tiny_spec, blip_path,
                                                     monkeypatch):
    monkeypatch.setenv("MMSEARCH_RERANKER", f"blip:{blip_path}")
    with mmsearch.open(tmp_path / "s", model=tiny_spec) as col:
        col.index([photos], progress=False)
        hits = col.search(text="a dog", k=2, rerank=True, explain=True)
        assert hits[0].explain["rerank"]["model"] == f"blip:{blip_path}"
        with pytest.raises(UsageError, match="rerank must be"):
            col.search(text="a dog", rerank=-1)


def test_cli_rerank_flags(cli, photos, tmp_path, tiny_spec, blip_path):
    store = tmp_path / "store"
    assert cli("index", photos, "--store", store, "--model", tiny_spec, "-q").exit_code == 0
    res = cli("query", "a red mug", "--store", store, "--json", "-k", "8", "--rerank", "3",
              "--reranker", f"blip:{blip_path}", "--explain")
    assert res.exit_code == 0, res.stderr
    hits = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(hits) == 8 and sum("rerank" in h["explain"] for h in hits) == 3
    res = cli("query", "--image", photos / "img0.jpg", "--store", store, "--rerank", "2",
              "--reranker", f"blip:{blip_path}")
    assert res.exit_code == 2 and "reranking needs a text" in res.stderr
    res = cli("query", "a mug", "--store", store, "--reranker", f"blip:{blip_path}")
    assert res.exit_code == 2 and "--reranker needs --rerank" in res.stderr
    res = cli("query", "a mug", "--store", store, "--rerank", "2", "--reranker", "nope")
    assert res.exit_code == 2 and "unknown reranker" in res.stderr
    res = cli("query", "a mug", "--store", store, "--rerank", "2",
              "--reranker", f"blip:{tmp_path / 'none'}")
    assert res.exit_code == 1 and "cannot load the BLIP reranker" in res.stderr
