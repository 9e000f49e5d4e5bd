"""Image decoding: orientation, size caps, bombs, transparency, animated GIFs, truncation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mmsearch.errors import BadMediaError
from mmsearch.ingest.images import decode_image


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_is_applied_and_reported_upright():
    img = Image.new("RGB", (80, 40), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 40, 40))           # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6                                  # rotate 90° clockwise to display
    out = decode_image(_encode(img, "JPEG", exif=exif), max_pixels=10**7)
    assert out.image.size == (40, 80)
    assert (out.meta["width"], out.meta["height"]) == (40, 80)
    top = np.asarray(out.image)[5, 20]
    assert top[2] > 200 and top[0] < 60                # blue now on top


def test_large_images_are_downscaled_below_the_cap():
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (3000, 4000, 3), np.uint8))
    for fmt in ("JPEG", "PNG"):
        out = decode_image(_encode(big, fmt), max_pixels=1_000_000)
        assert out.image.width * out.image.height <= 1_000_000
        assert out.image.width / out.image.height == pytest.approx(4 / 3, rel=0.02)
        assert (out.meta["width"], out.meta["height"]) == (4000, 3000)


def test_decompression_bomb_is_refused_not_crashed(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = _encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(BadMediaError, match="too large"):
        decode_image(data, max_pixels=10**7)


def test_transparent_png_gets_white_background_and_gif_first_frame():
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    out = decode_image(_encode(rgba, "PNG"), max_pixels=10**6)
    assert out.image.mode == "RGB" and out.image.getpixel((5, 5)) == (255, 255, 255)
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    first = decode_image(buf.getvalue(), max_pixels=10**6).image.getpixel((5, 5))
    assert first[0] > 200 and first[1] < 50


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\nbroken", b"GIF89a", b"hello"])
def test_garbage_raises_bad_media(data):
    with pytest.raises(BadMediaError):
        decode_image(data, max_pixels=10**6)


def test_truncated_jpeg_raises_bad_media():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 200, 3), np.uint8))
    data = _encode(img, "JPEG")
    with pytest.raises(BadMediaError, match="truncated"):
        decode_image(data[: len(data) // 2], max_pixels=10**6)


def test_jpeg_draft_decodes_large_photos_reduced_but_keeps_enough_pixels():
    big = Image.fromarray(np.random.default_rng(2).integers(0, 255, (2400, 3200, 3), np.uint8))
    data = _encode(big, "JPEG")
    out = decode_image(data, max_pixels=10**8, min_side=512)
    assert 512 <= min(out.image.size) < 1200            # decoded at 1/2 or 1/4 scale
    assert (out.meta["width"], out.meta["height"]) == (3200, 2400)
    small = decode_image(_encode(big.resize((600, 450)), "JPEG"), max_pixels=10**8,
                         min_side=512)
    assert small.image.size == (600, 450)                 # not worth reducing: untouched
