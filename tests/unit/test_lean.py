"""The lean query path (planner.lean) answers plain vector queries exactly as the planner
does, in one index call (one per batch); it steps aside for everything else. The cell
reader behind its records gives what `Table.to_pylist` gives."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

import mmsearch
from mmsearch.planner import lean
from mmsearch.view.cells import Cells

DIM = 16


def table(n: int, start: int = 0) -> pa.Table:
    rng = np.random.default_rng(start)
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    ids = np.arange(start, start + n)
    return pa.table({
        "id": [f"i{i}" for i in ids], "bucket": ids % 10,
        "price": pa.array([None if i % 7 == 0 else float(i) / 3 for i in ids]),
        "name": pa.array([None if i % 5 == 0 else f"näme {i}" for i in ids]),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), DIM)})


@pytest.fixture(scope="module")
def col(tmp_path_factory):
    c = mmsearch.open(tmp_path_factory.mktemp("lean") / "s")
    for lo in range(0, 600, 200):  # three segments: chunked columns
        c.upsert(table(200, lo))
    c.upsert(table(5, 0).slice(0, 5).set_column(1, "bucket", pa.array([9] * 5)))  # replaced
    yield c
    c.close()


def planner(col, monkeypatch, **options):
    with monkeypatch.context() as m:
        m.setattr(lean, "search", lambda *a: None)
        return col.search(**options)


def same(a, b):
    assert [r.id for r in a] == [r.id for r in b]
    assert [r.score for r in a] == pytest.approx([r.score for r in b], abs=1e-5)
    assert [r.similarity for r in a] == pytest.approx([r.similarity for r in b], abs=1e-5)
    assert [(r.path, r.modality, r.metadata) for r in a] == \
        [(r.path, r.modality, r.metadata) for r in b]


@pytest.mark.parametrize("options", [
    {"k": 10}, {"k": 3, "offset": 4}, {"k": 50, "filters": {"bucket": {"in": [1, 9]}}},
    {"k": 10, "filters": {"price": {"lt": 20}}}, {"k": 5, "filters": {"bucket": 99}},
    {"k": 1000}])
def test_lean_answers_as_the_planner(col, monkeypatch, options):
    snap = col.snapshot()
    assert lean._prepared(snap, col._env).makers(snap.cells), "a function a row, per chunk"
    calls = []
    real = lean.search
    monkeypatch.setattr(lean, "search", lambda *a: calls.append(1) or real(*a))
    for q in np.random.default_rng(1).standard_normal((5, DIM)).astype(np.float32):
        got = col.search(vector=q, **options)
        same(got, planner(col, monkeypatch, vector=q, **options))
        if "bucket" not in str(options):
            assert len(got) == min(options["k"], len(col) - options.get("offset", 0))
    assert len(calls) == 5, "the lean path answered"
    # a request object (the HTTP service's way) takes the same path
    req = mmsearch.SearchRequest(vector=[1.0] * DIM, **options)
    same(col.search(req), planner(col, monkeypatch, vector=[1.0] * DIM, **options))


def test_ties_are_ordered_by_id_as_the_planner_does(tmp_path, monkeypatch):
    c = mmsearch.open(tmp_path / "s")
    v = np.eye(DIM, dtype=np.float32)[[0, 0, 0, 1, 1]]
    c.upsert(pa.table({"id": ["c", "a", "b", "e", "d"], "vector":
                       pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), DIM)}))
    got = c.search(vector=v[0], k=5)
    assert [r.id for r in got] == ["a", "b", "c", "d", "e"]
    same(got, planner(c, monkeypatch, vector=v[0], k=5))


def test_batch_is_one_index_call_and_equals_single_searches(col, monkeypatch):
    q = np.random.default_rng(2).standard_normal((7, DIM)).astype(np.float32)
    index = col.snapshot().index
    calls = []
    real = type(index).search
    monkeypatch.setattr(type(index), "search",
                        lambda self, qs, *a: calls.append(len(qs)) or real(self, qs, *a))
    for options in ({"k": 4}, {"k": 6, "offset": 1, "filters": {"bucket": {"lt": 5}}},
                    {"k": 30}):  # 7 x 30 results: the values read a column at a time
        calls.clear()
        batch = col.search_batch(vectors=q, **options)
        assert calls == [7]
        for got, v in zip(batch, q, strict=True):
            same(got, planner(col, monkeypatch, vector=v, **options))
    bad = q.copy()
    bad[3, 2] = np.nan  # checked at once; a doubtful batch goes the full way, which says why
    with pytest.raises(mmsearch.UsageError, match="finite"):
        col.search_batch(vectors=bad, k=3)


def test_a_batch_with_tied_queries_equals_single_searches(tmp_path, monkeypatch):
    """Queries whose best rows tie go the general way (ties by id); the others in the same
    batch keep the index's answer: each page as the planner gives it."""
    base = table(60)
    v = np.stack(base.column("vector").to_numpy(zero_copy_only=False))
    col = mmsearch.open(tmp_path / "s")
    col.upsert(base)
    col.upsert([{"id": f"dup{c}", "vector": v[0].tolist(), "bucket": 3} for c in "ba"])
    q = np.concatenate([v[:1], np.random.default_rng(4).standard_normal((4, DIM)),
                        v[:1]]).astype(np.float32)
    for options in ({"k": 3}, {"k": 2, "offset": 1}, {"k": 4, "filters": {"bucket": 3}}):
        for got, one in zip(col.search_batch(vectors=q, **options), q, strict=True):
            same(got, planner(col, monkeypatch, vector=one, **options))
        table_ids = col.search_batch(vectors=q, as_table=True, **options).column("id")
        assert table_ids.to_pylist() == [r.id for hits in col.search_batch(
            vectors=q, **options) for r in hits]
    assert [r.id for r in col.search(vector=v[0], k=3)] == ["dupa", "dupb", "i0"]
    col.close()


def test_other_queries_and_stores_take_the_planner(tmp_path, col, monkeypatch, tiny_spec):
    called = []
    real = lean.search
    monkeypatch.setattr(lean, "search", lambda *a: called.append(real(*a)) or called[-1])
    q = np.ones(DIM, np.float32)
    for options in ({"min_score": -5.0}, {"sort": "bucket"}, {"explain": True},
                    {"weights": {"visual": 2}}, {"where": "bucket < 3"}):
        col.search(vector=q, k=3, **options)
    assert called == [], "not plain: the planner answers"
    c = mmsearch.open(tmp_path / "two", model=tiny_spec)  # two channels: fused per item
    dim = c.encoder.dim
    v = np.random.default_rng(3).standard_normal((3, dim)).astype(np.float32)
    c.upsert(pa.table({"id": ["a", "b", "c"], "vector":
                       pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), dim)}))
    c.upsert([{"id": "t", "text": "a red shoe"}])
    assert next(r.id for r in c.search(vector=v[1], k=4)) == "b"
    assert called and set(called) == {None}, "asked, and it stepped aside"
    with pytest.raises(mmsearch.UsageError):
        col.search(vector=[1.0] * (DIM + 1), k=3)  # the planner names the problem


def test_cells_read_what_to_pylist_gives():
    part = pa.table({
        "i": pa.array([1, None, -3], pa.int64()), "u8": pa.array([1, 2, None], pa.uint8()),
        "f": pa.array([1.5, float("nan"), None]), "f32": pa.array([0.1, None, 2.5],
                                                                 pa.float32()),
        "b": pa.array([True, None, False]), "s": pa.array(["x", None, "zé"]),
        "ls": pa.array(["a", "", None], pa.large_string()),
        "ts": pa.array([dt.datetime(2020, 1, 2, 3, 4, 5, 6), None,
                        dt.datetime(1960, 1, 1)], pa.timestamp("us")),
        "tms": pa.array([dt.datetime(2020, 1, 2, 3, 4, 5, 6000), None,
                         dt.datetime(1969, 12, 31, 23, 59)], pa.timestamp("ms")),
        "tz": pa.array([dt.datetime(2020, 1, 2), None, dt.datetime(2021, 5, 1)],
                       pa.timestamp("us", tz="UTC")),
        "l": pa.array([[1], None, [2, 3]]), "d": pa.array([dt.date(2020, 1, 1), None,
                                                             dt.date(1999, 1, 1)])})
    t = pa.concat_tables([part, part.slice(1, 2), part.slice(0, 1)])  # chunks and offsets
    cells = Cells(t)
    for rows in ([0, 1, 2, 3, 4, 5], [5, 0, 3, 1, 3], [], [4, 5]):
        expect = t.take(pa.array(rows, pa.int64())).to_pylist()
        assert repr(cells.rows(rows)) == repr(expect)
        # many rows at once: a column and chunk at a time, the same values
        assert repr(cells.columns(np.array(rows), t.column_names)) == \
            repr([[r[n] for r in expect] for n in t.column_names])
        # as Arrow arrays: a take per chunk, the same values as the table's own take
        taken = cells.take(np.array(rows, dtype=np.int64), t.column_names)
        assert repr({n: a.to_pylist() for n, a in taken.items()}) == \
            repr({n: [r[n] for r in expect] for n in t.column_names})
        # a generated function a row (one per chunk): the same values
        made = cells.row_functions(t.column_names, lambda cs: f"({', '.join(cs)},)")
        chunks, local = cells.locate(rows, "i")
        assert repr([made[c](i) for c, i in zip(chunks, local, strict=True)]) == \
            repr([tuple(r.values()) for r in expect])
    dictionary = pa.chunked_array([pa.array(["a", "b"]).dictionary_encode(),
                                   pa.array(["c", "a"]).dictionary_encode()])
    by_chunk = Cells(pa.table({"d": dictionary})).take(np.array([3, 0, 2]), ["d"])["d"]
    assert by_chunk.to_pylist() == ["a", "a", "c"]
    assert cells.rows([4], ["s", "i"]) == [{"s": "zé", "i": -3}]
    full = pa.table({"i": pa.array([5, -1, 7], pa.int64()),
                     "f": pa.array([0.5, 2, 3], pa.float32()),
                     "t": pa.array([dt.datetime(2001, 1, 1), dt.datetime(1950, 5, 5),
                                    dt.datetime(2030, 1, 1, 0, 0, 1)], pa.timestamp("ms"))})
    chunked = pa.concat_tables([full.slice(1, 2), full, full.slice(2, 1)])  # no nulls
    rows = np.array([4, 0, 2, 5, 1, 1])
    taken = Cells(chunked).take(rows, chunked.column_names)  # a numpy gather each
    assert {n: a.to_pylist() for n, a in taken.items()} == \
        chunked.take(pa.array(rows)).to_pydict()
    empty_first = pa.concat_tables([full.slice(0, 0), full])  # (a segment's rows all gone)
    assert Cells(empty_first).row_functions(["i", "t"], lambda cs: f"({cs[0]}, {cs[1]})")[1](2) \
        == (7, dt.datetime(2030, 1, 1, 0, 0, 1))
    assert Cells(empty_first).values([2, 0], ["f", "i"]) == [[3.0, 0.5], [7, 5]]
    unlike = pa.table({"a": pa.chunked_array([[1, 2], [3]]), "b": pa.chunked_array([[1], [2, 3]])})
    assert Cells(unlike).row_functions(["a", "b"], lambda cs: cs[0]) is None, "chunked apart"
    assert Cells(unlike).row_functions(["b"], lambda cs: cs[0])[1](1) == 3


def test_channels_annotate_only_where_they_may_change_results(tmp_path, col, monkeypatch):
    """The OCR channel shapes results only when the store has OCR lines (or with explain):
    its `ocr_lines` never reach a result, and without them it is not called at all."""
    from mmsearch.channels.ocr import OcrChannel

    calls = []
    real = OcrChannel.annotate
    monkeypatch.setattr(OcrChannel, "annotate", lambda *a: calls.append(1) or real(*a))
    q = np.ones(DIM, np.float32)
    assert len(col.search(vector=q, k=5)) == 5 and calls == [], "no OCR lines: not called"
    c = mmsearch.open(tmp_path / "lines")
    v = np.random.default_rng(4).standard_normal((3, DIM)).astype(np.float32)
    c.upsert(pa.table({"id": ["a", "b", "c"], "ocr_lines": ['[{"text": "x"}]', None, None],
                       "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)),
                                                                   DIM)}))
    got = c.search(vector=v[0], k=3)
    assert len(calls) == 3 and all("ocr_lines" not in r.metadata for r in got)
    same(got, planner(c, monkeypatch, vector=v[0], k=3))


def test_timestamp_cells_past_the_readers_memo():
    """Equal timestamps share one datetime (a small memo per chunk); more distinct ones
    than it keeps are still read right."""
    from mmsearch.view.cells import TIME_MEMO

    times = [dt.datetime(2020, 1, 1) + dt.timedelta(seconds=i) for i in range(TIME_MEMO + 50)]
    t = pa.table({"t": pa.array(times, pa.timestamp("us"))})
    rows = [*range(len(times)), 0, 7, len(times) - 1]
    assert Cells(t).values(rows, ["t"])[0] == [times[r] for r in rows]
