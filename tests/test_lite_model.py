"""The real offline mmsearch-lite model: shapes, norms, determinism and retrieval quality.

The tower packages are dependencies of mmsearch, so their absence is a broken install and
fails here rather than skipping. The quality check needs ../shared/data (skipped without).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FLICKR = DATA / "flickr8k"


@pytest.fixture(scope="module")
def enc():
    from mmsearch.encoders.lite import load_lite

    return load_lite("cpu")


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (120, 90, 3), dtype=np.uint8), "RGB")


def test_spec_dims_and_unit_norm(enc) -> None:
    assert enc.spec == "mmsearch-lite"
    assert enc.device == "cpu"
    pixels = torch.stack([enc.preprocess(_image(0)), enc.preprocess(_image(1))])
    assert pixels.shape == (2, 3, 260, 260)
    img = enc.encode_images(pixels)
    txt = enc.encode_texts(["a dog runs on the beach", "two people ride bicycles"])
    for v in (img, txt):
        assert v.dtype == np.float32
        assert v.shape == (2, enc.dim)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert enc.encode_texts([]).shape == (0, enc.dim)


def test_preprocess_accepts_other_modes(enc) -> None:
    gray = _image(2).convert("L")
    assert enc.preprocess(gray).shape == (3, 260, 260)


def test_deterministic_and_batch_independent(enc) -> None:
    pixels = torch.stack([enc.preprocess(_image(i)) for i in range(3)])
    a = enc.encode_images(pixels)
    b = enc.encode_images(pixels)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(enc.encode_images(pixels[1:2])[0], a[1], atol=1e-4)
    texts = ["a red car", "a man climbing a rock wall with a rope"]
    t = enc.encode_texts(texts)
    np.testing.assert_array_equal(t, enc.encode_texts(texts))
    np.testing.assert_allclose(enc.encode_texts(texts[1:])[0], t[1], atol=1e-4)


@pytest.mark.skipif(not (FLICKR / "captions.csv").is_file(),
                    reason=f"evaluation data not found at {FLICKR} (clone beside shared/)")
def test_text_to_image_quality_on_flickr8k(enc) -> None:
    """20 Flickr8k test photos vs their first captions: most land in the top 5.

    Measured with the shipped heads: 19/20 in the top 5, 14/20 first (chance: 5/20, 1/20).
    """
    with open(FLICKR / "captions.csv", newline="", encoding="utf-8") as f:
        first = sorted((r for r in csv.DictReader(f) if r["caption_id"] == "0"),
                       key=lambda r: r["image_id"])[:20]
    pixels = torch.stack([enc.preprocess(Image.open(FLICKR / r["file"]).convert("RGB"))
                          for r in first])
    img = enc.encode_images(pixels)
    txt = enc.encode_texts([r["caption"] for r in first])
    sims = txt @ img.T
    ranks = (sims > np.diag(sims)[:, None]).sum(axis=1)
    assert (ranks < 5).sum() >= 14, f"ranks of the right image: {ranks.tolist()}"
    assert (ranks == 0).sum() >= 8, f"ranks of the right image: {ranks.tolist()}"
