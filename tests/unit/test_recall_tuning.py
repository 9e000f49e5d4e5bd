"""Recall you can trust: at each (re)training the IVF-PQ index measures its recall@10 on
held-out stored vectors and picks the cheapest nprobe / re-score depth reaching the target,
on three vector sets of different intrinsic dimension (real image embeddings: see
tests/acceptance/test_recall_lite_images.py)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pyarrow as pa
import pytest
from helpers import REPO

import mmsearch
from mmsearch.errors import UsageError
from mmsearch.index import tuning
from mmsearch.index.params import AnnParams

sys.path.insert(0, str(REPO))
from benchmarks import vector_sets as vs

PARAMS = {"threshold": 1000, "m": 16, "train_per_list": 40}
N = 6000
SETS = {  # name -> generator(n, seed); intrinsic dimension about 6, 16 and 128
    "subspace": lambda n, s: vs.subspace(n, dim=128, rank=6, seed=s),
    "mixture": lambda n, s: vs.mixture(n, dim=128, centers=100, rank=16, seed=s),
    "isotropic": lambda n, s: vs.isotropic(n, dim=128, centers=100, noise=2.0, seed=s),
}


def table(v: np.ndarray, start: int = 0) -> pa.Table:
    ids = [f"v{i}" for i in range(start, start + len(v))]
    return pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(
        pa.array(v.reshape(-1)), v.shape[1])})


def tuning_of(path) -> dict:
    return json.loads((path / "manifest.json").read_text())["ann"]["tuning"]


def index_recall(col, data: np.ndarray, queries: np.ndarray) -> float:
    """recall@10 of the snapshot's index itself (what the tuning promises) on new queries."""
    _, rows = col.snapshot().index.search(queries, 10)
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, truth, strict=True)]))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One store per vector set, trained (and so measured) at N rows."""
    out = {}
    for name, gen in SETS.items():
        path = tmp_path_factory.mktemp(name) / "store"
        data = gen(N, 1)
        with mmsearch.open(path, index_params=PARAMS) as col:
            col.upsert(table(data))
            out[name] = (path, data, index_recall(col, data, gen(300, 2)),
                         col.info()["index_params"])
    return out


@pytest.mark.parametrize("name", list(SETS))
def test_measured_recall_reaches_the_target_and_holds_for_new_queries(tuned, name):
    path, _, fresh, info = tuned[name]
    t = tuning_of(path)
    assert t["met"] and t["lower_bound_95"] >= 0.95 and t["target"] == 0.95
    assert t["rows"] == N and t["queries"] == 256
    # the setting in use is the measured one, and `info` reports the measurement
    assert (info["nprobe"], info["rerank"]) == (t["nprobe"], t["rerank"])
    assert info["recall_at_10"] == t["recall_at_10"] and info["recall_met"] is True
    # fresh queries (never stored) from the same distribution get the promised recall
    assert fresh >= 0.95 - 0.03, (name, fresh, t)


@pytest.mark.parametrize("name", list(SETS))
def test_the_chosen_setting_is_the_cheapest_that_reaches_the_target(tuned, name):
    path, _, _, info = tuned[name]
    t = tuning_of(path)

    def price(p, d):
        return tuning.cost(p, d, rows=N, nlist=info["nlist"], code_bytes=8, dim=128)

    chosen = price(t["nprobe"], t["rerank"])
    tried = {(p, d): (r, low) for p, d, r, low in t["grid"]}
    assert tried[t["nprobe"], t["rerank"]] == (t["recall_at_10"], t["lower_bound_95"])
    assert t["lower_bound_95"] >= 0.95
    # every setting of the ladders that costs less was measured, and missed the target
    # (its 95 % lower confidence bound is under it)
    cheaper = [(p, d) for p in tuning.nprobe_ladder(info["nlist"]) for d in tuning.RERANK_LADDER
               if price(p, d) < chosen]
    assert all(tried.get(s, (1, 1))[1] < 0.95 for s in cheaper), [
        (s, tried.get(s)) for s in cheaper]


def test_higher_intrinsic_dimension_needs_a_deeper_search(tuned):
    def bytes_read(name):
        t, info = tuning_of(tuned[name][0]), tuned[name][3]
        return tuning.cost(t["nprobe"], t["rerank"], rows=N, nlist=info["nlist"],
                           code_bytes=8, dim=128)

    assert bytes_read("isotropic") > 3 * max(bytes_read("subspace"), bytes_read("mixture"))


def test_retraining_and_growth_remeasure_small_adds_do_not(tmp_path):
    path = tmp_path / "store"
    data = SETS["mixture"](4000, 1)
    with mmsearch.open(path, index_params=PARAMS) as col:
        col.upsert(table(data[:2000]))
        first = tuning_of(path)
        assert first["rows"] == 2000
        col.upsert(table(data[2000:2500], 2000))  # 1.25x: the measurement still stands
        assert tuning_of(path)["measured_at"] == first["measured_at"]
        col.upsert(table(data[2500:], 2500))  # 2x the measured rows: measured again
        grown = tuning_of(path)
        assert grown["rows"] == 4000 and grown["measured_at"] > first["measured_at"]
        col.rebuild_index()  # a retrain always measures its new index
        again = tuning_of(path)
        assert again["measured_at"] > grown["measured_at"] and again["met"]
    with mmsearch.open(path, index_params=PARAMS) as col:  # a reader uses the saved setting
        info = col.info()["index_params"]
        assert (info["nprobe"], info["rerank"]) == (again["nprobe"], again["rerank"])


def test_a_higher_target_buys_more_recall(tmp_path):
    path = tmp_path / "store"
    data = SETS["mixture"](3000, 1)
    with mmsearch.open(path, index_params={**PARAMS, "target_recall": 0.99}) as col:
        col.upsert(table(data))
        t = tuning_of(path)
    assert t["target"] == 0.99 and t["lower_bound_95"] >= 0.99 and t["met"]
    with mmsearch.open(path, index_params={**PARAMS, "target_recall": 0.8}) as col:
        col.rebuild_index()
        low = tuning_of(path)
    assert low["recall_at_10"] >= 0.8 and (low["nprobe"], low["rerank"]) <= (t["nprobe"],
                                                                            t["rerank"])
    assert low["rerank"] * low["nprobe"] < t["rerank"] * t["nprobe"]


def test_pinned_settings_are_measured_and_a_shortfall_is_reported(tmp_path, caplog):
    from typer.testing import CliRunner

    from mmsearch.cli import app

    path = tmp_path / "store"
    data = SETS["isotropic"](3000, 1)
    with mmsearch.open(path, index_params={**PARAMS, "nprobe": 1, "rerank": 1}) as col:
        col.upsert(table(data))
        info = col.info()["index_params"]
    t = tuning_of(path)
    assert (t["nprobe"], t["rerank"]) == (1, 1) == (info["nprobe"], info["rerank"])
    assert not t["met"] and t["recall_at_10"] < 0.95 and len(t["grid"]) == 1
    assert "recall@10 reaches only" in caplog.text
    out = CliRunner().invoke(app, ["info", "--store", str(path)],
                             env={"MMSEARCH_ANN_NPROBE": "1", "MMSEARCH_ANN_RERANK": "1"})
    assert out.exit_code == 0, out.output
    assert f"recall@10 {t['recall_at_10']:.3f} (BELOW target 0.95" in out.output


def test_target_recall_is_validated():
    with pytest.raises(UsageError, match="target_recall"):
        AnnParams.resolve({"target_recall": 1.5})
    assert AnnParams.resolve({"target_recall": 0.9}).target_recall == 0.9
