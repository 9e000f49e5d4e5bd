"""Query planner on synthetic vectors: calibration, fusion, negatives, grouping, paging,
min-score, rrf, sort, and the CLI flags end to end."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

import mmsearch
from mmsearch.errors import UsageError
from mmsearch.planner.calibration import Calibration, Stats, measure
from mmsearch.planner.groups import build_layout
from mmsearch.planner.plan import RRF_K, counted_channels, execute
from mmsearch.planner.query import (
    CROSS_MODAL_WEIGHT,
    Part,
    Query,
    SortKey,
    parse_weights,
    split_negatives,
)
from mmsearch.view.snapshot import Snapshot

DIM = 16


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def snapshot(rows: list[dict], vectors: np.ndarray) -> Snapshot:
    table = pa.Table.from_pylist([{"key": i, "start_s": None, **r} for i, r in enumerate(rows)])
    return Snapshot(0, table, vectors)


def image_query(v: np.ndarray, **kw) -> Query:
    return Query([Part("image", v, 1.0, "image")], **kw)


CAL = Calibration({("image", "visual"): Stats(0.1, 0.2, 100),
                   ("image", "text"): Stats(0.0, 0.1, 100),
                   ("text", "visual"): Stats(0.2, 0.05, 100),
                   ("text", "text"): Stats(0.3, 0.1, 100)}, dim=DIM)


def test_measure_is_the_null_distribution_without_same_item_pairs():
    rng = np.random.default_rng(0)
    vecs = unit(rng, 12)
    channels = np.array(["visual"] * 8 + ["text"] * 4)
    items = np.array([0, 0, 1, 2, 3, 4, 5, 6, 0, 7, 8, 9])  # item 0 has 2 visual + 1 text
    cal = measure(vecs, channels, items)
    vis, txt = vecs[:8], vecs[8:]
    cos = vis @ vis.T
    keep = items[:8, None] != items[None, :8]
    assert cal.stats[("image", "visual")].mean == pytest.approx(cos[keep].mean(), abs=1e-5)
    assert cal.stats[("image", "visual")].std == pytest.approx(cos[keep].std(), abs=1e-5)
    cross = txt @ vis.T  # text-like rows are the text probes
    keep = items[8:, None] != items[None, :8]
    assert cal.stats[("text", "visual")].mean == pytest.approx(cross[keep].mean(), abs=1e-5)
    # text probes from an encoder join the stored text rows
    probes = unit(rng, 3)
    with_probes = measure(vecs, channels, items, text_probes=probes)
    all_cos = np.concatenate([cross[keep], (probes @ vis.T).ravel()])
    assert with_probes.stats[("text", "visual")].mean == pytest.approx(all_cos.mean(), abs=1e-5)
    # round trip through the manifest's JSON
    back = Calibration.from_json(json.loads(json.dumps(cal.to_json())))
    assert back.stats[("image", "text")].std == pytest.approx(
        cal.stats[("image", "text")].std, abs=1e-6)


def test_fusion_is_weighted_stouffer_over_parts_and_channels():
    rng = np.random.default_rng(1)
    vecs = unit(rng, 4)
    rows = [{"id": "p1", "modality": "image", "channel": "visual"},
            {"id": "p1", "modality": "text", "channel": "text"},
            {"id": "p2", "modality": "image", "channel": "visual"},
            {"id": "p3", "modality": "text", "channel": "text"}]
    snap = snapshot(rows, vecs)
    q = unit(rng, 1)[0]
    t = unit(rng, 1)[0]
    z_img = np.array([(vecs[0] @ q - 0.1) / 0.2, (vecs[1] @ q - 0.0) / 0.1,
                      (vecs[2] @ q - 0.1) / 0.2, (vecs[3] @ q - 0.0) / 0.1])
    z_txt = np.array([(vecs[0] @ t - 0.2) / 0.05, (vecs[1] @ t - 0.3) / 0.1,
                      (vecs[2] @ t - 0.2) / 0.05, (vecs[3] @ t - 0.3) / 0.1])
    row = (2 * z_img + z_txt) / np.sqrt(5)  # parts: image weight 2, text weight 1
    query = Query([Part("image", q, 2.0, "image"), Part("text", t, 1.0, "text:x")],
                  weights={"visual": 1.0, "text": 0.5}, explain=True, k=5)
    hits = {snap.table.column("id")[h.row].as_py(): h for h in execute(snap, query, CAL, None)}
    # no channel is on every item here, so p1's second channel counts only if it raises
    # p1's score (test_optional_channels_count_only_where_they_raise_the_score)
    stouffer = (1.0 * row[0] + 0.5 * row[1]) / np.sqrt(1.25)
    expected = {"p1": max(stouffer, row[0], row[1]), "p2": row[2], "p3": row[3]}
    for item, score in expected.items():
        assert hits[item].score == pytest.approx(score, abs=1e-4)
    ex = hits["p1"].explain
    assert set(ex["channels"]) == {"visual", "text"}
    assert sum(c["contribution"] for c in ex["channels"].values()) == pytest.approx(
        hits["p1"].score, abs=1e-3)
    assert ex["channels"]["text"]["parts"]["image"]["z"] == pytest.approx(z_img[1], abs=1e-3)
    # weight 0 leaves a channel out: p3 (text only) disappears, p1 is scored on its photo
    only_visual = execute(snap, Query(query.positives, weights={"text": 0}, k=5), CAL, None)
    assert [h.row for h in only_visual] == sorted([0, 2], key=lambda r: -row[r])
    assert max(h.score for h in only_visual) == pytest.approx(max(row[0], row[2]), abs=1e-4)


def _two_channel_store(channel: str, ocr_cos: float):
    """a: a photo (cosine 0.875 with the query e0) plus a row in `channel` (cosine
    `ocr_cos`); b: a photo only (cosine 0.75), or a photo and a `channel` row of cosine 0
    when `channel` is "text" (a catalog: every item has both)."""
    def at(cos: float, axis: int) -> np.ndarray:
        v = np.zeros(DIM, np.float32)
        v[0], v[axis] = cos, np.sqrt(1 - cos ** 2)
        return v
    rows = [{"id": "a", "modality": "image", "channel": "visual"},
            {"id": "a", "modality": "text", "channel": channel},
            {"id": "b", "modality": "image", "channel": "visual"}]
    vecs = [at(0.875, 1), at(ocr_cos, 2), at(0.75, 3)]
    if channel == "text":
        rows.append({"id": "b", "modality": "text", "channel": "text"})
        vecs.append(at(0.0, 4))
    return snapshot(rows, np.stack(vecs))


def test_optional_channels_count_only_where_they_raise_the_score():
    cal = Calibration({("text", "visual"): Stats(0.0, 0.25, 1),
                       ("text", "ocr"): Stats(0.0, 0.25, 1),
                       ("text", "text"): Stats(0.0, 0.25, 1)})
    q = np.zeros(DIM, np.float32)
    q[0] = 1.0
    query = Query([Part("text", q, 1.0, "t")], k=2, explain=True)
    # unrelated words read in a's photo (z -1) do not rank a's better photo (z 3.5) down
    a, b = execute(_two_channel_store("ocr", -0.25), query, cal, None)
    assert (a.item, b.item) == (0, 1) and a.score == pytest.approx(3.5, abs=1e-4)
    assert a.explain["channels"]["ocr"]["counted"] is False
    assert a.explain["channels"]["ocr"]["contribution"] == 0.0
    assert b.score == pytest.approx(3.0, abs=1e-4)
    # words that match add to it: Stouffer over both
    a, _ = execute(_two_channel_store("ocr", 0.9), query, cal, None)
    assert a.score == pytest.approx((3.5 + 3.6) / np.sqrt(2), abs=1e-4)
    assert "counted" not in a.explain["channels"]["ocr"]
    # a channel every item has (a catalog's titles) always counts, even against the item
    a, b = execute(_two_channel_store("text", -0.25), query, cal, None)
    scores = {h.item: h.score for h in (a, b)}
    assert scores[0] == pytest.approx((3.5 - 1.0) / np.sqrt(2), abs=1e-4)
    assert scores[1] == pytest.approx((3.0 + 0.0) / np.sqrt(2), abs=1e-4)


def test_counted_channels_takes_optional_ones_best_first_while_they_raise_the_score():
    # items: [visual 3, ocr -1], [visual 1, speech 2, tags 1.5, ocr -2], [ocr -0.5],
    #        [speech 0.5, tags 2.5]; "visual" is on every item, the rest only on some
    z = np.array([3, -1, 1, 2, 1.5, -2, -0.5, 0.5, 2.5])
    universal = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0], bool)
    starts, ends = np.array([0, 2, 6, 7]), np.array([2, 6, 7, 9])
    got = counted_channels(z, np.ones(9), universal, starts, ends)
    # 1 + 2 + 1.5 = 4.5 / sqrt(3) = 2.6 > (1 + 2) / sqrt(2) = 2.1 > 1; adding -2 lowers it;
    # item 4 starts from its best (2.5): adding 0.5 gives 3 / sqrt(2) = 2.1 < 2.5
    assert got.tolist() == [1, 0, 1, 1, 1, 0, 1, 0, 1]
    assert counted_channels(z, np.ones(9), np.ones(9, bool), starts, ends).all()


def test_negatives_penalise_only_rows_that_look_like_them():
    rng = np.random.default_rng(2)
    pos, neg = unit(rng, 2)
    a = pos + 0.1 * unit(rng, 1)[0]
    b = pos + neg  # matches the positive and the negative
    c = pos - neg  # matches the positive, unlike the negative
    vecs = np.stack([v / np.linalg.norm(v) for v in (a, b, c)])
    snap = snapshot([{"id": i, "modality": "image", "channel": "visual"} for i in "abc"], vecs)
    cal = Calibration({("image", "visual"): Stats(0.0, 0.25, 1),
                       ("text", "visual"): Stats(0.0, 0.25, 1)})
    with_neg = execute(snap, Query([Part("text", pos, 1.0, "t")],
                                   [Part("text", neg, 1.0, "not:n")], k=3), cal, None)
    z = lambda v, u: float(v @ u) / 0.25  # noqa: E731
    got = {h.row: h.score for h in with_neg}
    for r in range(3):
        assert got[r] == pytest.approx(z(vecs[r], pos) - max(z(vecs[r], neg), 0.0), abs=1e-4)
    assert with_neg[-1].row == 1  # b looked like the negative
    assert got[2] == pytest.approx(z(vecs[2], pos), abs=1e-4)  # no bonus for being unlike it


def test_split_negatives_and_weights_parsing():
    assert split_negatives("beach -people  -dogs at dusk") == ("beach at dusk",
                                                               ["people", "dogs"])
    assert split_negatives("red t-shirt -logo") == ("red t-shirt", ["logo"])
    assert split_negatives("-cats") == ("", ["cats"])
    assert parse_weights(["visual=1,text=0.5", "speech=0"]) == {
        "visual": 1.0, "text": 0.5, "speech": 0.0}
    with pytest.raises(UsageError, match="CHANNEL=NUMBER"):
        parse_weights("text:0.5")
    assert SortKey.parse("-taken_at") == SortKey("taken_at", True)
    assert SortKey.parse("taken_at:desc") == SortKey("taken_at", True)
    assert SortKey.parse("price:asc") == SortKey("price", False)
    for bad in ("price:sideways", "a b", "x;drop"):
        with pytest.raises(UsageError):
            SortKey.parse(bad)
    v = np.ones(DIM, np.float32) / 4
    for kw, msg in (({"fusion": "max"}, "fusion"), ({"offset": -1}, "offset"),
                    ({"k": 0}, "k must"), ({"weights": {"text": -1}}, "weight")):
        with pytest.raises(UsageError, match=msg):
            image_query(v, **kw)


def test_moments_group_into_their_item_best_moment_first():
    rng = np.random.default_rng(3)
    q = unit(rng, 1)[0]
    vecs = unit(rng, 7)
    vecs[4] = q  # video v2's moment at 8 s is the exact match
    rows = [{"id": "v1", "modality": "video", "channel": "visual", "start_s": float(2 * i)}
            for i in range(3)]
    rows += [{"id": "v2", "modality": "video", "channel": "visual", "start_s": float(4 * i)}
             for i in range(3)]
    rows += [{"id": "img", "modality": "image", "channel": "visual"}]
    snap = snapshot(rows, vecs)
    hits = execute(snap, image_query(q, k=10), CAL, None)
    assert len(hits) == 3  # three items, not seven rows
    assert hits[0].row == 4 and snap.table.column("start_s")[4].as_py() == 4.0
    assert hits[0].score == pytest.approx((1.0 - 0.1) / 0.2, abs=1e-4)
    best_v1 = max(range(3), key=lambda r: vecs[r] @ q)
    assert {h.row for h in hits} == {4, best_v1, 6}


def test_the_moment_shown_is_the_row_contributing_most_not_the_highest_z():
    """A video whose OCR row (weight 0.1) has a higher z than its matching picture moment:
    the result is the picture moment, where the evidence weighs most."""
    rng = np.random.default_rng(4)
    q = unit(rng, 1)[0]
    vecs = unit(rng, 3)
    vecs[1] = q  # the picture moment at 8 s matches exactly
    vecs[2] = q  # the OCR row at 15 s too, and its calibration makes its z higher
    rows = [{"id": "v", "modality": "video", "channel": "visual", "start_s": 0.0},
            {"id": "v", "modality": "video", "channel": "visual", "start_s": 8.0},
            {"id": "v", "modality": "video", "channel": "ocr", "start_s": 15.0}]
    cal = Calibration({("image", "visual"): Stats(0.1, 0.2, 100),
                       ("image", "ocr"): Stats(0.0, 0.1, 100)}, dim=DIM)
    query = image_query(q, k=5, weights={"ocr": 0.1}, explain=True)
    (hit,) = execute(snapshot(rows, vecs), query, cal, None)
    channels = hit.explain["channels"]
    assert channels["ocr"]["score"] > channels["visual"]["score"]  # the higher z
    assert hit.row == 1  # but the visual moment contributes more
    # with the OCR channel weighted up, its row is the one shown
    (hit,) = execute(snapshot(rows, vecs), image_query(q, k=5, weights={"ocr": 1.0}), cal,
                     None)
    assert hit.row == 2


def test_pages_never_repeat_and_match_one_long_list():
    rng = np.random.default_rng(4)
    vecs = unit(rng, 400)
    rows = [{"id": f"i{i // 2}", "modality": "video", "channel": "visual",
             "start_s": float(i % 2)} for i in range(400)]
    snap = snapshot(rows, vecs)
    q = unit(rng, 1)[0]
    long = [h.item for h in execute(snap, image_query(q, k=60), CAL, None)]
    pages = [h.item for off in range(0, 60, 7)
             for h in execute(snap, image_query(q, k=7, offset=off), CAL, None)][:60]
    assert pages == long and len(set(pages)) == 60
    # deep pages past the first candidate pool stay disjoint too
    p1 = {h.item for h in execute(snap, image_query(q, k=50, offset=50), CAL, None)}
    p2 = {h.item for h in execute(snap, image_query(q, k=50, offset=100), CAL, None)}
    assert len(p1) == 50 and len(p2) == 50 and not p1 & p2


def test_min_score_is_a_z_cut_whatever_the_query_kind():
    rng = np.random.default_rng(5)
    vecs = unit(rng, 200)
    snap = snapshot([{"id": f"i{i}", "modality": "image", "channel": "visual"}
                     for i in range(200)], vecs)
    q = unit(rng, 1)[0]
    for kind, stats in (("image", CAL.stats[("image", "visual")]),
                        ("text", CAL.stats[("text", "visual")])):
        query = Query([Part(kind, q, 1.0, kind)], k=200, min_score=1.5)
        hits = execute(snap, query, CAL, None)
        z = (vecs @ q - stats.mean) / stats.std
        assert len(hits) == int((z >= 1.5).sum()) > 0
        assert all(h.score >= 1.5 for h in hits)
        # same z cut, different raw-cosine cut per query kind
        assert min(float(vecs[h.row] @ q) for h in hits) >= stats.mean + 1.5 * stats.std - 1e-6


def test_rrf_scores_are_weighted_reciprocal_ranks_per_channel():
    rng = np.random.default_rng(6)
    vecs = unit(rng, 6)
    rows = [{"id": f"p{i % 3}", "modality": "image" if i < 3 else "text",
             "channel": "visual" if i < 3 else "text"} for i in range(6)]
    snap = snapshot(rows, vecs)
    q = unit(rng, 1)[0]
    hits = execute(snap, image_query(q, k=3, fusion="rrf", weights={"text": 2.0}), CAL, None)
    vis_rank = {int(r): n + 1 for n, r in enumerate(np.argsort(-(vecs[:3] @ q)))}
    txt_rank = {int(r): n + 1 for n, r in enumerate(np.argsort(-(vecs[3:] @ q)))}
    assert len(hits) == 3
    for h in hits:
        pid = int(snap.table.column("id")[h.row].as_py()[1:])
        expected = 1.0 / (RRF_K + vis_rank[pid]) + 2.0 / (RRF_K + txt_rank[pid])
        assert h.score == pytest.approx(expected, abs=1e-9), pid


def test_sort_orders_the_results_above_min_score():
    rng = np.random.default_rng(7)
    vecs = unit(rng, 50)
    rows = [{"id": f"i{i}", "modality": "image", "channel": "visual",
             "price": None if i % 10 == 0 else float(i % 13)} for i in range(50)]
    snap = snapshot(rows, vecs)
    q = unit(rng, 1)[0]
    relevant = execute(snap, image_query(q, k=50, min_score=0.5), CAL, None)
    by_price = execute(snap, image_query(q, k=50, min_score=0.5,
                                         sort=SortKey("price", True)), CAL, None)
    assert {h.item for h in by_price} == {h.item for h in relevant}
    prices = [snap.table.column("price")[h.row].as_py() for h in by_price]
    present = [p for p in prices if p is not None]
    assert present == sorted(present, reverse=True)
    assert prices[len(present):] == [None] * (len(prices) - len(present))  # nulls last
    with pytest.raises(UsageError, match="no such column"):
        execute(snap, image_query(q, sort=SortKey("nope")), CAL, None)


def test_layout_reads_null_channels_from_modality():
    table = pa.table({"id": ["a", "b", "a"], "modality": ["image", "text", "video"],
                      "channel": pa.array([None, None, "speech"], pa.string())})
    lay = build_layout(table)
    assert lay.channel.tolist() == ["visual", "text", "speech"]
    assert sorted(lay.rows_of(np.array([lay.item[0]])).tolist()) == [0, 2]


def test_collection_persists_calibration_in_the_commit(tmp_path):
    rng = np.random.default_rng(8)
    vecs = unit(rng, 100)
    path = tmp_path / "s"
    with mmsearch.open(path) as col:
        col.upsert([{"id": f"i{i}", "vector": v} for i, v in enumerate(vecs)])
        manifest = json.loads((path / "manifest.json").read_text())
        stats = manifest["calibration"]["stats"]["image>visual"]
        assert manifest["calibration"]["rows"] == 100 and stats["n"] > 1000
        gen = manifest["generation"]
        col.upsert([{"id": "extra", "vector": vecs[0]}])  # small change: not re-measured
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["generation"] == gen + 1 and manifest["calibration"]["rows"] == 100
        col.upsert([{"id": f"j{i}", "vector": v} for i, v in enumerate(unit(rng, 40))])
        assert json.loads((path / "manifest.json").read_text())["calibration"]["rows"] == 141
        hit = col.search(vector=vecs[3], k=1, explain=True)[0]
        stats = col._store.manifest["calibration"]["stats"]["image>visual"]
        assert hit.id == "i3"
        assert hit.score == pytest.approx((1.0 - stats["mean"]) / stats["std"], abs=1e-3)
        assert hit.to_dict()["explain"]["channels"]["visual"]["parts"]["vector"]["z"] == \
            pytest.approx(hit.score, abs=1e-3)
        # the python API pages, cuts and sorts like the planner
        first = col.search(vector=vecs[3], k=5)
        second = col.search(vector=vecs[3], k=5, offset=5)
        assert not {h.id for h in first} & {h.id for h in second}
        assert all(h.score >= 2 for h in col.search(vector=vecs[3], k=50, min_score=2))
        with pytest.raises(UsageError, match="reranking needs a text"):
            col.search(vector=vecs[3], rerank=5)


def _index(cli, photos, store, spec):
    res = cli("index", photos, "--store", store, "--model", spec, "-q")
    assert res.exit_code == 0, res.stderr


def _json(res) -> list[dict]:
    assert res.exit_code == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def test_cli_planner_flags_end_to_end(cli, photos, tmp_path, tiny_spec):
    store = tmp_path / "store"
    _index(cli, photos, store, tiny_spec)
    base = ("query", "--store", store, "--json")
    every = _json(cli(*base, "a red mug", "-k", "20"))
    assert len(every) == 8
    # --offset pages through the same ranking
    page2 = _json(cli(*base, "a red mug", "-k", "3", "--offset", "3"))
    assert [h["id"] for h in page2] == [h["id"] for h in every[3:6]]
    # --min-score: a cut on the calibrated score
    cut = every[2]["score"]
    above = _json(cli(*base, "a red mug", "-k", "20", "--min-score", str(cut)))
    assert [h["id"] for h in above] == [h["id"] for h in every[:3]]
    # --sort after the cutoff; descending forms agree
    for spec in ("width:desc", "-width"):
        by_width = _json(cli(*base, "a red mug", "-k", "20", "--sort", spec))
        assert [h["width"] for h in by_width] == sorted((h["width"] for h in every),
                                                        reverse=True)
    # --explain: per-channel, per-part contributions in the JSON
    explained = _json(cli(*base, "a red mug", "--add", "on a desk", "--not", "people",
                          "-k", "2", "--explain"))
    parts = explained[0]["explain"]["channels"]["visual"]["parts"]
    assert set(parts) == {"text:a red mug", "text:on a desk", "not:people"}
    # `-word` in the text is a negative like --not
    minus = _json(cli(*base, "a red mug -people", "-k", "2", "--explain"))
    assert "not:people" in minus[0]["explain"]["channels"]["visual"]["parts"]
    assert [h["score"] for h in minus] == [h["score"] for h in _json(
        cli(*base, "a red mug", "--not", "people", "-k", "2"))]
    # --fusion rrf and --weight
    rrf = _json(cli(*base, "a red mug", "-k", "3", "--fusion", "rrf"))
    assert rrf[0]["score"] == pytest.approx(1.0 / (RRF_K + 1), abs=1e-6)
    weighted = _json(cli(*base, "a red mug", "-k", "3", "--weight", "visual=2"))
    assert [h["id"] for h in weighted] == [h["id"] for h in every[:3]]
    # human output shows the explanation under each result
    res = cli("query", "--store", store, "a red mug", "-k", "1", "--explain")
    assert res.exit_code == 0 and "visual" in res.stdout and "z=" in res.stdout
    # bad flags say what is wrong, exit 2
    for args, msg in ((("--fusion", "max"), "fusion"), (("--weight", "visual"), "CHANNEL="),
                      (("--sort", "nope"), "no such column"),
                      (("--sort", "width:up"), "sort order"),
                      (("--weight", "visual=0"), "weight 0")):
        res = cli("query", "--store", store, "a red mug", *args)
        assert res.exit_code == 2 and msg in res.stderr, (args, res.stderr)
    res = cli("query", "--store", store, "--", "-people")
    assert res.exit_code == 2 and "negatives alone" in res.stderr


def test_store_without_calibration_is_measured_at_query_time(tmp_path):
    """Stores written before calibration existed: measured in memory, same numbers."""
    rng = np.random.default_rng(9)
    vecs = unit(rng, 60)
    with mmsearch.open(tmp_path / "s") as col:
        col.upsert([{"id": f"i{i}", "vector": v} for i, v in enumerate(vecs)])
        stored = col._store.manifest["calibration"]["stats"]["image>visual"]
        with col._store.writer() as store:
            store.commit([], extra={"calibration": None})
    with mmsearch.open(tmp_path / "s") as col:
        assert col._store.manifest["calibration"] is None
        hit = col.search(vector=vecs[5], k=1)[0]
        assert hit.score == pytest.approx((1.0 - stored["mean"]) / stored["std"], abs=1e-3)


def test_queries_without_text_weigh_non_visual_channels_down():
    v = np.ones(4, dtype=np.float32) / 2
    by_image = Query([Part("image", v, 1.0, "image")])
    assert by_image.channel_weight("visual") == 1.0
    assert by_image.channel_weight("text") == by_image.channel_weight("tags") == \
        CROSS_MODAL_WEIGHT < 1.0
    with_text = Query([Part("image", v, 1.0, "image"), Part("text", v, 1.0, "text:red")])
    assert with_text.channel_weight("text") == 1.0
    explicit = Query([Part("image", v, 1.0, "image")], weights={"text": 0.7, "visual": 0.0})
    assert (explicit.channel_weight("text"), explicit.channel_weight("visual")) == (0.7, 0.0)
