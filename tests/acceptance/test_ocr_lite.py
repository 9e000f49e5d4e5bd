"""Acceptance (issue 15): printed words are found with the offline model mmsearch-lite, and
phone (HEIC) and camera (RAW) photos are found by query-by-example.

The set is built afresh by tests/ocr_evalset.py: 30 Flickr8k photos with 2-3 words printed
on each (varied fonts, sizes, rotations, contrast; each phrase names one picture) among 30
plain Flickr8k photos. Query = the printed words. The issue's bar is the picture first in
>= 90 % of queries and in the top 5 in >= 97 %, checked here as such; the benchmark
measured 0.971 / 1.000 on 172 queries (150 printed photos, 12 screenshots, 10 slides;
RESULTS.md, "OCR"). The same queries against the same pictures indexed with --no-ocr are
the baseline, which must stay far below (mmsearch-lite cannot read).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import SHARED_DATA
from ocr_evalset import build_photos

import mmsearch
from mmsearch.ocr.engine import available

FLICKR = SHARED_DATA / "flickr8k" / "images"
N_TEXT, N_PLAIN = 30, 30

pytestmark = [
    pytest.mark.skipif(not FLICKR.is_dir(), reason=f"Flickr8k photos not found at {FLICKR}"),
]


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    return sorted(FLICKR.glob("*.jpg"))


@pytest.mark.skipif(available() is not None, reason=str(available()))
def test_printed_words_find_their_picture(tmp_path, photos):
    data = tmp_path / "data"
    printed = build_photos(data / "signs", photos[:N_TEXT], seed=3)
    (data / "plain").mkdir()
    for src in photos[N_TEXT:N_TEXT + N_PLAIN]:
        shutil.copy(src, data / "plain" / src.name)
    rates = {}
    for mode in (True, False):
        with mmsearch.open(tmp_path / f"store-{mode}", model="mmsearch-lite") as col:
            report = col.index([data], progress=False, ocr=mode)
            assert report.failed == 0
            ranks = []
            for p in printed:
                hits = [Path(h.path) for h in col.search(p.query, k=5)]
                ranks.append(hits.index(p.path) if p.path in hits else 99)
            rates[mode] = (sum(r == 0 for r in ranks) / len(ranks),
                           sum(r < 5 for r in ranks) / len(ranks))
    assert rates[True][0] >= 0.90, rates
    assert rates[True][1] >= 0.97, rates
    assert rates[False][0] <= 0.5, rates  # the baseline without the ocr channel


def test_heic_and_raw_found_by_example(tmp_path, photos):
    heif = pytest.importorskip("pillow_heif", reason="HEIC needs the `photos` extra")
    pytest.importorskip("rawpy", reason="RAW needs the `photos` extra")
    from PIL import Image
    from raw_dng import write_dng

    data = tmp_path / "data"
    data.mkdir()
    for src in photos[100:140]:
        shutil.copy(src, data / src.name)
    heic_src, raw_src = photos[200], photos[201]
    heif.from_pillow(Image.open(heic_src)).save(data / "phone.heic", quality=90)
    write_dng(data / "camera.dng", Image.open(raw_src))
    with mmsearch.open(tmp_path / "store", model="mmsearch-lite") as col:
        report = col.index([data], progress=False, ocr=False)
        assert (report.added, report.failed) == (42, 0)
        assert Path(col.search(image=heic_src, k=1)[0].path).name == "phone.heic"
        assert Path(col.search(image=raw_src, k=1)[0].path).name == "camera.dng"
