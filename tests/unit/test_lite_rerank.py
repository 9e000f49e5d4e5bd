"""The offline `lite` reranker: loads with no network, ranks real captions' photos first,
batches without changing scores, and fails clearly on a missing weights file."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from helpers import SHARED_DATA
from PIL import Image

from mmsearch.errors import MmsearchError
from mmsearch.rerank import load_reranker
from mmsearch.rerank.registry import reranker_names

FLICKR = SHARED_DATA / "flickr8k"
needs_data = pytest.mark.skipif(not (FLICKR / "captions.csv").is_file(),
                                reason=f"Flickr8k evaluation data not found at {FLICKR}")


@pytest.fixture(scope="module")
def reranker():
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    try:
        yield load_reranker("lite", "cpu")
    finally:
        mp.undo()


def _flickr(n: int, step: int = 50) -> tuple[list[Image.Image], list[str]]:
    """n real photos spread over the set (every `step`-th by image id) and caption 0 each."""
    with open(FLICKR / "captions.csv", newline="", encoding="utf-8") as f:
        rows = sorted((r for r in csv.DictReader(f) if r["caption_id"] == "0"),
                      key=lambda r: r["image_id"])[::step][:n]
    return ([Image.open(FLICKR / r["file"]).convert("RGB") for r in rows],
            [r["caption"].strip() for r in rows])


def test_registered_as_builtin_and_loads_offline(reranker) -> None:
    assert "lite" in reranker_names()
    assert reranker.spec == "lite" and reranker.device == "cpu"
    assert reranker.alpha > 0


@needs_data
def test_matching_caption_scores_its_photo_highest(reranker) -> None:
    images, captions = _flickr(6)
    scores = np.stack([reranker.score(c, images) for c in captions])  # (captions, images)
    assert scores.shape == (6, 6) and scores.dtype == np.float32
    top = scores.argmax(axis=1)
    assert (top == np.arange(6)).sum() >= 5, f"top image per caption: {top.tolist()}"


def test_batching_gives_the_same_scores(reranker) -> None:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (90 + 7 * i, 120, 3), dtype=np.uint8))
              for i in range(5)]
    images.append(images[0].convert("L"))  # other modes are converted
    whole = reranker.score("a dog runs on the grass", images)
    old = reranker.batch_size
    try:
        reranker.batch_size = 2
        parts = reranker.score("a dog runs on the grass", images)
    finally:
        reranker.batch_size = old
    assert whole.shape == (6,)
    np.testing.assert_allclose(parts, whole, atol=1e-4)
    np.testing.assert_allclose(reranker.score("a dog runs on the grass", images[:1]),
                               whole[:1], atol=1e-4)
    assert reranker.score("anything", []).shape == (0,)


def test_missing_weights_file_is_a_clear_error(tmp_path) -> None:
    from mmsearch.rerank.lite_head import MatchHead

    with pytest.raises(MmsearchError, match="not found"):
        MatchHead.load(tmp_path / "nope.safetensors")


def test_default_reranker_offline_says_so_and_reranks_nothing(photos, tmp_path, tiny_spec,
                                                               monkeypatch, caplog) -> None:
    """Without a reachable BLIP, --rerank runs no reranker (the lite one did not earn its
    place, issue 16) and says so once; the search itself still answers."""
    import mmsearch

    monkeypatch.delenv("MMSEARCH_RERANKER", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # BLIP surely not cached here
    with mmsearch.open(tmp_path / "s", model=tiny_spec) as col:
        col.index([photos], progress=False)
        with caplog.at_level("WARNING", logger="mmsearch"):
            hits = col.search(text="a red square", k=2, rerank=2, explain=True)
            again = col.search(text="a red square", k=2, rerank=2, explain=True)
    assert len(hits) == 2 and [h.path for h in hits] == [h.path for h in again]
    assert not any("rerank" in h.explain for h in hits + again)
    said = [r.getMessage() for r in caplog.records if "no offline reranker" in r.getMessage()]
    assert len(said) == 1, said
