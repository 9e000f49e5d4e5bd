"""Hubness correction: the bank's soft maximum, the file round trip, and the planner
demoting a hub image for text queries only (raw cosines kept in `similarity`)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import mmsearch
from mmsearch.planner import hubness
from mmsearch.planner.calibration import Calibration, Stats
from mmsearch.planner.plan import execute
from mmsearch.planner.query import Part, Query
from mmsearch.view.snapshot import Snapshot

DIM = 16
CAL = Calibration({("image", "visual"): Stats(0.0, 0.25, 1),
                   ("text", "visual"): Stats(0.0, 0.25, 1)})


def unit(v: np.ndarray) -> np.ndarray:
    v = np.atleast_2d(np.asarray(v, np.float32))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def models(tmp_path, monkeypatch):
    """Banks of the specs "m-..." in a folder of our own (the lru cache cleared around the
    test)."""
    monkeypatch.setattr(hubness, "bank_path", lambda spec: tmp_path / f"{spec}.bank.safetensors"
                        if spec.startswith("m-") else None)
    hubness.load.cache_clear()
    yield tmp_path
    hubness.load.cache_clear()


def world(rng: np.random.Generator):
    """Queries about 8 orthogonal topics; a hub image equally close to all of them; a target
    image closer to nothing but topic 0, yet less close to it than the hub; 30 images about
    none of the topics."""
    topics = np.eye(DIM, dtype=np.float32)[:8]
    bank = unit(np.repeat(topics, 16, axis=0) + 0.05 * rng.normal(size=(128, DIM)))
    hub = unit(topics.sum(axis=0))[0]  # cosine 0.354 with each topic
    target = unit(0.3 * topics[0] + 0.954 * np.eye(DIM)[9])[0]  # cosine 0.3 with topic 0
    others = unit(np.hstack([0.02 * rng.random((30, 8)), rng.normal(size=(30, DIM - 8))]))
    vectors = np.vstack([hub, target, others]).astype(np.float32)
    rows = [{"key": i, "id": f"r{i}", "modality": "image", "channel": "visual",
             "start_s": None} for i in range(len(vectors))]
    return topics, bank, Snapshot(0, pa.Table.from_pylist(rows), vectors)


def test_hubness_is_tau_logsumexp_of_bank_similarities():
    rng = np.random.default_rng(0)
    bank, v = unit(rng.normal(size=(50, DIM))), unit(rng.normal(size=(7, DIM)))
    prior = hubness.HubPrior(bank, 0.05, 0.5)
    sim = (v @ bank.T).astype(np.float64)
    expected = 0.05 * np.log(np.exp(sim / 0.05).sum(axis=1))
    np.testing.assert_allclose(prior.hubness(v), expected, rtol=1e-5)
    # the soft maximum lies between the maximum and the maximum + tau * log(n)
    assert (prior.hubness(v) >= sim.max(axis=1) - 1e-6).all()
    assert (prior.hubness(v) <= sim.max(axis=1) + 0.05 * np.log(50) + 1e-6).all()


def test_the_default_offline_model_ships_its_bank():
    """The installed package finds the bank beside the heads; other specs have none."""
    prior = hubness.load("mmsearch-lite-4")
    assert prior is not None and prior.bank.shape == (4096, 256)
    assert np.allclose(np.linalg.norm(prior.bank, axis=1), 1.0, atol=2e-3)
    assert 0 < prior.tau < 1 and 0 < prior.beta <= 1
    assert hubness.bank_path("ViT-B-32:/some/path.pt") is None
    assert hubness.load("mmsearch-lite") is None  # the first generation ships none


def test_bank_file_round_trip_and_unknown_specs(models, monkeypatch):
    rng = np.random.default_rng(1)
    bank = rng.normal(size=(40, DIM))
    hubness.write_bank(hubness.bank_path("m-1"), bank, tau=0.02, beta=0.5, captions=40)
    prior = hubness.load("m-1")
    assert prior is not None and prior.tau == 0.02 and prior.beta == 0.5
    np.testing.assert_allclose(prior.bank, unit(bank), atol=2e-3)  # float16 unit rows
    assert hubness.load("m-2") is None and hubness.load("../m-1") is None
    assert hubness.spec_of({"model": {"spec": "m-1"}}) == "m-1"
    assert hubness.spec_of({"model": {"spec": "m-2"}}) is None
    assert hubness.spec_of({}) is None
    monkeypatch.setenv("MMSEARCH_HUBNESS", "off")
    assert hubness.spec_of({"model": {"spec": "m-1"}}) is None
    monkeypatch.setenv("MMSEARCH_HUBNESS", "on")
    assert hubness.spec_of({"model": {"spec": "m-1"}}) == "m-1"
    assert hubness.describe("m-1") == {"bank": "m-1.bank.safetensors", "queries": 40,
                                       "tau": 0.02, "beta": 0.5}


def test_text_queries_demote_the_hub_and_keep_raw_similarity(models):
    rng = np.random.default_rng(2)
    topics, bank, snap = world(rng)
    hubness.write_bank(hubness.bank_path("m-1"), bank, tau=0.05, beta=1.0)
    query = topics[0]
    plain = execute(snap, Query([Part("text", query, 1.0, "t")], k=3), CAL, None)
    fixed = execute(snap, Query([Part("text", query, 1.0, "t")], k=3, hub="m-1", explain=True),
                    CAL, None)
    assert plain[0].row == 0 and plain[1].row == 1  # uncorrected: the hub wins
    assert fixed[0].row == 1  # corrected: the image that matches this query
    assert {h.row: h.similarity for h in fixed}[1] == pytest.approx(float(snap.vectors.take(
        np.array([1]))[0] @ query), abs=1e-5)
    penalty = fixed[0].explain["channels"]["visual"]["hubness_penalty"]
    prior = hubness.load("m-1")
    hub = prior.hubness(snap.vectors.take(np.arange(len(snap))))
    assert penalty == pytest.approx(hub[1] - hub.mean(), abs=1e-3)  # centre: all 32 rows
    assert fixed[0].score == pytest.approx((float(snap.vectors.take(np.array([1]))[0] @ query)
                                            - penalty) / 0.25, abs=1e-2)


def test_image_queries_and_models_without_bank_are_not_corrected(models):
    rng = np.random.default_rng(3)
    topics, bank, snap = world(rng)
    hubness.write_bank(hubness.bank_path("m-1"), bank, tau=0.05, beta=1.0)
    for query in (Query([Part("image", topics[0], 1.0, "image")], k=5, hub="m-1"),
                  Query([Part("text", topics[0], 1.0, "t")], k=5, hub="no-bank")):
        base = Query(query.positives, k=5)
        assert [(h.row, round(h.score, 6)) for h in execute(snap, query, CAL, None)] == \
            [(h.row, round(h.score, 6)) for h in execute(snap, base, CAL, None)]


def test_store_of_a_model_with_a_bank_corrects_text_search(models, tiny_spec, photos,
                                                         tmp_path, monkeypatch, cli):
    """Through the library: `info` names the bank, text results carry the penalty, and
    `similarity` stays the raw cosine."""
    col = mmsearch.open(tmp_path / "store", model=tiny_spec, device="cpu")
    col.index([photos], progress=False)
    assert col.info()["hubness"] is None
    before = {r.id: r.similarity for r in col.search(text="a red square", k=8)}
    rng = np.random.default_rng(4)
    file = tmp_path / "bank.safetensors"
    hubness.write_bank(file, rng.normal(size=(64, col.info()["dim"])), tau=0.05, beta=1.0)
    monkeypatch.setattr(hubness, "bank_path", lambda spec: file)
    hubness.load.cache_clear()
    col.close()
    col = mmsearch.open(tmp_path / "store", model=tiny_spec, device="cpu")
    assert col.info()["hubness"]["queries"] == 64
    line = [x for x in cli("info", "--store", tmp_path / "store").stdout.splitlines()
            if x.startswith("hubness")]
    assert line and "64 bank queries" in line[0] and "tau 0.05" in line[0], line
    after = col.search(text="a red square", k=8, explain=True)
    assert len(after) == len(before) == 8
    for r in after:
        assert "hubness_penalty" in r.explain["channels"]["visual"]
        assert r.similarity == pytest.approx(before[r.id], abs=1e-5)
    same = col.search(image=next(photos.glob("*.jpg")), k=8, explain=True)
    assert all("hubness_penalty" not in r.explain["channels"]["visual"] for r in same)
