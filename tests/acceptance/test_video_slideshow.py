"""Acceptance on real data: Flickr8k slideshow videos find their moments."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from helpers import SHARED_DATA

import mmsearch


def test_slideshow_subset_finds_the_right_moment(tmp_path, tiny_spec):
    """Real data: 5 Flickr8k slideshow videos; each source photo finds its moment."""
    root = SHARED_DATA / "flickr8k_slideshow"
    if not (root / "segments.csv").is_file():
        pytest.skip(f"evaluation data absent: {root} (see ../shared/data/README.md)")

    files = sorted((root / "video").glob("*.mp4"))[:5]
    names = {f.name for f in files}
    segments = {}
    with open(root / "segments.csv", newline="") as f:
        for row in csv.DictReader(f):
            if Path(row["video"]).name in names:
                segments[(Path(row["video"]).name, row["segment"])] = (
                    float(row["start_s"]), float(row["end_s"]),
                    SHARED_DATA / "flickr8k" / row["source_file"])
    assert len(segments) == 50
    with mmsearch.open(tmp_path / "store", model=tiny_spec) as col:
        # moments by picture only: the tiny random model puts every frame at cosine ~0.98
        # of every other (z differences ~0.2), so the OCR rows it reads in 2 photos (weight
        # 0.1, z of +-2 by chance) would decide between videos; a real model does not
        report = col.index(files, progress=False, ocr=False)
        assert report.added == 5 and len(col) == 5
        hits = 0
        for (video, _), (start, end, source) in segments.items():
            top = col.search(image=source, k=3)[0]
            hits += Path(top.path).name == video and start <= top.start_s < end
    assert hits >= 0.95 * len(segments), f"{hits}/50 moments found"
