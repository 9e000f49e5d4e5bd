"""Sharded search on a local Ray cluster: shard actors give the single-store answer; a slow
or killed shard gives a clear partial result and the next query is whole again."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'mmsearch[ray]'")

import mmsearch  # noqa: E402
from mmsearch.distributed import RayCollection  # noqa: E402

DIM = 32


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def same(a: list, b: list) -> None:
    assert [r.id for r in a] == [r.id for r in b] and a
    assert [r.score for r in a] == pytest.approx([r.score for r in b], rel=1e-4, abs=1e-4)


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster in this process on 2 CPUs, shut down after the module."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(mmsearch.__file__).parents[1])}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def stores(cluster, tmp_path_factory, tiny_spec):
    root = tmp_path_factory.mktemp("ray")
    rng = np.random.default_rng(0)
    vecs = unit(rng, 60)
    rows = [{"id": f"item-{i}", "vector": vecs[i].tolist(), "price": int(i * 7 % 100),
             "color": ["red", "green", "blue"][i % 3]} for i in range(60)]
    single = mmsearch.open(root / "single", model=tiny_spec)
    single.upsert(rows)
    mmsearch.open(root / "sharded", model=tiny_spec, shards=4).upsert(rows)
    col = mmsearch.open(root / "sharded", ray="local")
    assert isinstance(col, RayCollection)
    col.timeout = 20.0
    yield single, col
    col.close()


def test_ray_search_gives_the_single_store_answer(stores):
    single, col = stores
    q = unit(np.random.default_rng(3), 2)
    for kwargs in ({"vector": q[0]}, {"vector": q[1], "k": 5, "offset": 5},
                   {"vector": q[0], "filters": {"color": "red"}, "sort": "-price"},
                   {"text": "a red car", "k": 20}, {"text": "dog", "fusion": "rrf"}):
        a, b = single.search(**kwargs), col.search(**kwargs)
        same(a, b)
        assert b.partial is False and b.missing == []
    assert col.facets("color") == single.facets("color")


def test_bad_filter_is_a_usage_error_not_a_partial_result(stores):
    _, col = stores
    with pytest.raises(mmsearch.UsageError, match="bad filter"):
        col.search(text="x", where="no_such_column > 1")


def test_writes_reach_the_actors(stores):
    single, col = stores
    v = unit(np.random.default_rng(11), 1)[0]
    for c in (single, col):
        c.upsert([{"id": "fresh", "vector": v.tolist(), "price": 1, "color": "red"}])
    hits = col.search(vector=v, k=3)
    assert hits[0].id == "fresh"
    same(single.search(vector=v, k=3), hits)


def test_a_slow_shard_gives_a_partial_result_then_whole_again(stores):
    single, col = stores
    q = unit(np.random.default_rng(5), 1)[0]
    col.pause_shard(2, 4.0)
    col.timeout = 1.0
    try:
        partial = col.search(vector=q, k=10)
    finally:
        col.timeout = 20.0
    assert partial.partial is True and partial.missing == ["shard-002"]
    from mmsearch.shards import shard_of

    assert all(shard_of(r.id, 4) != 2 for r in partial) and partial
    time.sleep(3.5)  # the slow answer arrives and is dropped
    whole = col.search(vector=q, k=10)
    assert whole.partial is False
    same(single.search(vector=q, k=10), whole)


def test_a_killed_shard_actor_mid_query_is_reported_and_restarted(stores):
    single, col = stores
    q = unit(np.random.default_rng(6), 1)[0]
    col.pause_shard(1, 3.0)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(r=col.search(vector=q, k=10)))
    thread.start()
    time.sleep(1.0)
    ray.kill(col.actors[1], no_restart=False)  # the process dies; Ray restarts the actor
    thread.join(30)
    partial = result["r"]
    assert partial.partial is True and partial.missing == ["shard-001"]
    whole = col.search(vector=q, k=10)  # waits for the restarted actor
    assert whole.partial is False
    same(single.search(vector=q, k=10), whole)


# -- ingestion on Ray Data ----------------------------------------------------------------
def _report(r) -> tuple:
    return (r.added, r.updated, r.renamed, r.removed, r.unchanged, r.failed,
            sorted(p for p, _ in r.failures))


def test_ray_ingestion_is_the_local_run_even_when_an_encoder_actor_dies(
        cluster, tmp_path, tiny_spec, photos, monkeypatch):
    """Same reports and store as a local run, first run with a drill killing the encoder
    actor once (Ray restarts it and retries its batch: nothing is lost), then an
    incremental run (rename, delete, add)."""
    from helpers import make_photo

    local = mmsearch.open(tmp_path / "local", model=tiny_spec, shards=3)
    (photos / "broken.jpg").write_bytes(b"not an image")
    remote = RayCollection(tmp_path / "onray", model=tiny_spec, shards=3, address="local")
    remote.encoder_actors = 1
    marker, writer_marker = tmp_path / "drill", tmp_path / "writer-drill"
    monkeypatch.setenv("MMSEARCH_RAY_DRILL_EXIT_ONCE", str(marker))
    monkeypatch.setenv("MMSEARCH_RAY_DRILL_WRITER_EXIT_ONCE", str(writer_marker))
    first = [local.index([photos], progress=False), remote.index([photos], progress=False)]
    assert marker.exists(), "the drill should have killed the encoder actor once"
    assert writer_marker.exists(), "the drill should have killed a writer after a commit"
    monkeypatch.delenv("MMSEARCH_RAY_DRILL_EXIT_ONCE")
    monkeypatch.delenv("MMSEARCH_RAY_DRILL_WRITER_EXIT_ONCE")
    assert _report(first[0]) == _report(first[1]) and first[1].added == 8
    # the retried commit was not applied twice: one row per photo
    assert len(remote) == 8 and remote.info()["vectors"] == 8 and first[1].failed == 1
    same(local.search(text="a photo", k=8), remote.search(text="a photo", k=8))
    (photos / "img0.jpg").rename(photos / "moved.jpg")
    (photos / "img1.jpg").unlink()
    make_photo(photos / "new.jpg", seed=42)
    # through the plain API this time: a sharded store indexed with ray=
    second = [local.index([photos], progress=False),
              mmsearch.open(tmp_path / "onray").index([photos], progress=False, ray="local")]
    assert _report(second[0]) == _report(second[1])
    assert (second[1].added, second[1].renamed, second[1].removed) == (1, 1, 1)
    same(local.search(text="a photo", k=8), remote.search(text="a photo", k=8))
    remote.close()


def test_http_service_reports_missing_shards(stores):
    from fastapi.testclient import TestClient

    from mmsearch.serve import create_app

    single, col = stores
    client = TestClient(create_app(col))
    q = unit(np.random.default_rng(8), 1)[0].tolist()
    whole = client.post("/search", json={"vector": q, "k": 5}).json()
    assert "partial" not in whole
    assert [h["id"] for h in whole["results"]] == [r.id for r in single.search(vector=q, k=5)]
    col.pause_shard(0, 4.0)
    col.timeout = 1.0
    try:
        late = client.post("/search", json={"vector": q, "k": 5})
    finally:
        col.timeout = 20.0
    assert late.status_code == 200
    body = late.json()
    assert body["partial"] is True and body["missing_shards"] == ["shard-000"]
    time.sleep(3.5)


def test_cli_query_with_ray(stores, cli):
    single, col = stores
    result = cli("query", "a red car", "--store", col.path, "--ray", "local", "--json", "-k", "5")
    assert result.exit_code == 0, result.stderr
    import json

    ids = [json.loads(line)["id"] for line in result.stdout.splitlines()]
    assert ids == [r.id for r in single.search(text="a red car", k=5)]
