"""The channel interface: a channel registered from outside the facade takes part in
indexing options, query parts, row bonuses and info() with no facade change."""

from __future__ import annotations

import numpy as np
import pytest

import mmsearch
from mmsearch.channels import Channel, QueryContext, channels, register_channel, unregister_channel
from mmsearch.planner.query import Part


class Boost(Channel):
    """Gives the row of item `b7` a large bonus when the request's text asks for 'boost',
    adds the negated query vector of 'flip' as a part, and counts 3 side vectors."""

    name = "boost"
    options = ("boost_level",)

    def __init__(self) -> None:
        self.seen_options: dict = {}

    def indexing(self, manifest, options, device):
        self.seen_options = dict(options)
        return {}

    def query_parts(self, ctx: QueryContext) -> list[Part]:
        if ctx.request.vector is None or "flip" not in (ctx.request.text or ""):
            return []
        v = -ctx.request.vector / np.linalg.norm(ctx.request.vector)
        return [Part("image", v.astype(np.float32), 5.0, "flip")]

    def row_bonus(self, ctx: QueryContext) -> dict[int, float]:
        if "boost" not in (ctx.request.text or ""):
            return {}
        rows = ctx.snap.sql("SELECT _row FROM items WHERE id = 'b7'").fetchall()
        return {int(r): 100.0 for (r,) in rows}

    def counts(self, path, manifest):
        return {"boost": 3}


@pytest.fixture
def boost():
    channel = Boost()
    register_channel(channel)
    yield channel
    unregister_channel("boost")


def test_a_registered_channel_joins_search_and_info(tmp_path, boost):
    assert boost in channels()
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(20, 16)).astype(np.float32)
    with mmsearch.open(tmp_path / "s") as col:
        col.upsert([{"id": f"b{i}", "vector": v} for i, v in enumerate(vecs)])
        assert col.search(mmsearch.SearchRequest(vector=vecs[0], k=3))[0].id == "b0"
        assert col.info()["channels"]["boost"] == 3


def test_channel_bonus_and_parts_change_the_ranking(tmp_path, boost, tiny_spec):
    rng = np.random.default_rng(1)
    with mmsearch.open(tmp_path / "s", model=tiny_spec) as col:
        dim = col.encoder.dim
        vecs = rng.normal(size=(20, dim)).astype(np.float32)
        col.upsert([{"id": f"b{i}", "vector": v} for i, v in enumerate(vecs)])
        base = col.search(vector=vecs[0], text="plain", k=20)
        boosted = col.search(vector=vecs[0], text="boost", k=3)
        assert base[0].id != "b7" and boosted[0].id == "b7"
        flipped = col.search(vector=vecs[0], text="flip", k=20)
        assert flipped[-1].id == "b0"  # the channel's part points away from b0
        with pytest.raises(mmsearch.UsageError, match="unknown index option"):
            col.index([tmp_path], nope=1)
        (tmp_path / "media").mkdir()
        col.index([tmp_path / "media"], progress=False, boost_level=2)
        assert boost.seen_options == {"boost_level": 2}
