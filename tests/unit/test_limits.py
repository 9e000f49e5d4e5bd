"""Limits on what one request can grow: each has a default, a setting and an error that
names it; decoded pixels are checked from the header; long paths are reported."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
from PIL import Image

import mmsearch
from mmsearch.errors import BadMediaError, LimitError, UsageError
from mmsearch.filters import compile_filters
from mmsearch.ingest.images import decode_image
from mmsearch.limits import Limits


def _vec(seed: int, d: int = 8) -> list[float]:
    v = np.random.default_rng(seed).normal(size=d)
    return (v / np.linalg.norm(v)).tolist()


@pytest.fixture
def col(tmp_path, tiny_spec):
    c = mmsearch.open(tmp_path / "s", model=tiny_spec)
    c.upsert([{"id": f"t{i}", "text": f"item number {i}", "price": i} for i in range(5)])
    return c


def test_millions_of_negatives_are_refused_before_embedding(col, monkeypatch):
    calls = []
    real = col.encoder.encode_texts
    monkeypatch.setattr(col.encoder, "encode_texts", lambda t: calls.append(len(t)) or real(t))
    started = time.perf_counter()
    with pytest.raises(LimitError, match="max_text_chars") as e:
        col.search(text="dog " + " ".join(f"-w{i}" for i in range(1_000_000)))
    assert "MMSEARCH_LIMIT_MAX_TEXT_CHARS" in str(e.value)
    with pytest.raises(LimitError, match="max_query_parts"):
        col.search(text="dog", negative=[f"w{i}" for i in range(100_000)])
    with pytest.raises(LimitError, match="max_query_parts"):
        col.search(text="dog " + " ".join(f"-w{i}" for i in range(300)))
    assert not calls and time.perf_counter() - started < 5


def test_a_limit_is_a_setting(col, monkeypatch):
    text = "dog " + " ".join(f"-w{i}" for i in range(40))
    with pytest.raises(LimitError):
        col.search(text=text)
    monkeypatch.setenv("MMSEARCH_LIMIT_MAX_QUERY_PARTS", "64")
    col.search(text=text)
    assert Limits.resolve().max_query_parts == 64


def test_in_lists_filter_depth_and_malformed_operators():
    with pytest.raises(LimitError, match="max_in_values"):
        compile_filters({"id": {"in": list(range(3_000_000))}})
    with pytest.raises(LimitError, match="max_in_values"):
        compile_filters({"id": list(range(20_000))})
    with pytest.raises(LimitError, match="max_filter_depth"):
        compile_filters({"a": {"in": [[[1]]]}})
    deep: object = 1
    for _ in range(100_000):  # deeper than Python's recursion limit: checked iteratively
        deep = [deep]
    with pytest.raises(LimitError, match="max_filter_depth"):
        compile_filters({"a": {"in": deep}})
    with pytest.raises(LimitError, match="max_filter_conditions"):
        compile_filters({f"c{i}": i for i in range(1000)})
    for bad in ({"between": 5}, {"between": [1]}, {"in": None}, {"in": 3}, {"eq": {"x": 1}},
                {"lt": [1, 2]}, {"eq": float("nan")}, {"gt": float("inf")}, {"eq": 2**70},
                {}):
        with pytest.raises(UsageError):
            compile_filters({"price": bad})
    assert compile_filters({"price": {"between": [1, 2]}})[1] == [1, 2]


def test_malformed_filters_in_a_search_are_usage_errors(col):
    for bad in ({"price": {"between": 5}}, {"price": {"in": None}}, {"price": {"lt": 1e400}},
                {"price": {"eq": 2**70}}):
        with pytest.raises(UsageError):
            col.search(text="item", filters=bad)


def test_nan_and_inf_query_vectors_are_usage_errors(col):
    dim = col.encoder.dim
    for v in ([float("nan")] * dim, [float("inf")] * dim, [1e39] * dim, [0.0] * dim, ["a"]):
        with pytest.raises(UsageError, match="vector"):
            col.search(vector=v)


def _png(pixels: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("L", pixels).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def test_decoded_pixels_are_checked_from_the_header(col, monkeypatch):
    monkeypatch.setenv("MMSEARCH_LIMIT_MAX_IMAGE_PIXELS", "1000000")
    big = _png((2000, 1000))             # 2 MP in a few KB
    assert len(big) < 50_000
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(BadMediaError, match="max_image_pixels"):
        decode_image(big, 16_000_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000               # refused before the 2 MP were decoded
    with pytest.raises(LimitError, match="max_image_pixels"):
        col.search(image=big)
    decode_image(_png((900, 900)), 16_000_000)


def test_a_path_longer_than_path_max_is_reported(tmp_path, tiny_spec):
    from helpers import make_photo

    root = tmp_path / "deep"
    make_photo(root / "ok.jpg", seed=1)
    fd = os.open(root, os.O_RDONLY)
    for _ in range(25):                   # 25 x 200 characters: past PATH_MAX (4096)
        os.mkdir("d" * 200, dir_fd=fd)
        nfd = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, "JPEG")
    with open(os.open("far.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
        f.write(buf.getvalue())
    os.close(fd)
    report = mmsearch.open(tmp_path / "s", model=tiny_spec).index([root], progress=False)
    assert report.added == 1
    assert report.failed == 1
    path, reason = report.failures[0]
    assert len(path) > 4096 and "too long" in reason
