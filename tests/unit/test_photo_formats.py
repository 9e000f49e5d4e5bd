"""Phone and camera photos: HEIC/HEIF (pillow-heif) and RAW (rawpy), with their EXIF.

The HEIC is made from a test JPEG by pillow-heif's encoder; the RAW file is a DNG (an
RGGB Bayer mosaic) written by tests/raw_dng.py, since no Python package writes camera
RAW files. Other RAW containers (CR2, NEF, ARW, ...) go through the same LibRaw call but
are not tested here: no sample with a licence to ship is at hand.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from helpers import make_photo
from PIL import Image
from raw_dng import write_dng

import mmsearch
from mmsearch.errors import BadMediaError
from mmsearch.ingest.images import decode_image

heif = pytest.importorskip("pillow_heif", reason="HEIC needs the `photos` extra (pillow-heif)")
rawpy = pytest.importorskip("rawpy", reason="RAW needs the `photos` extra (rawpy)")

EXIF = {0x010F: "PhoneCo", 0x0110: "Model P", 0x0132: "2023:01:02 03:04:05"}


def make_heic(path: Path, jpeg: Path) -> Path:
    im = Image.open(jpeg)
    exif = Image.Exif()
    for tag, value in EXIF.items():
        exif[tag] = value
    exif[0x0112] = 6  # rotated: shown upright after decoding
    heif.from_pillow(im).save(path, exif=exif.tobytes(), quality=92)
    return path


def test_heic_decodes_upright_with_exif(tmp_path):
    jpeg = make_photo(tmp_path / "a.jpg", 1, size=(160, 96))
    data = make_heic(tmp_path / "a.heic", jpeg).read_bytes()
    decoded = decode_image(data, 10**8)
    assert decoded.meta["camera_make"] == "PhoneCo"
    assert decoded.meta["camera_model"] == "Model P"
    assert decoded.meta["taken_at"] == datetime(2023, 1, 2, 3, 4, 5)
    assert decoded.image.size in ((160, 96), (96, 160))
    assert (decoded.meta["width"], decoded.meta["height"]) == decoded.image.size


def test_dng_decodes_with_exif_and_colours(tmp_path):
    jpeg = make_photo(tmp_path / "a.jpg", 2, size=(160, 96))
    path = write_dng(tmp_path / "a.dng", Image.open(jpeg), make="Cam", model="R1",
                     taken="2022:03:04 05:06:07")
    decoded = decode_image(path.read_bytes(), 10**8)
    assert decoded.image.size == (160, 96)
    assert decoded.meta["camera_make"] == "Cam" and decoded.meta["camera_model"] == "R1"
    assert decoded.meta["taken_at"] == datetime(2022, 3, 4, 5, 6, 7)
    import numpy as np

    want = np.asarray(Image.open(jpeg).convert("RGB"), float).mean(axis=(0, 1))
    got = np.asarray(decoded.image, float).mean(axis=(0, 1))
    assert np.abs(want - got).max() < 40  # demosaiced colours near the original's


def test_broken_raw_and_heic_are_bad_media(tmp_path):
    jpeg = make_photo(tmp_path / "a.jpg", 3)
    heic = make_heic(tmp_path / "a.heic", jpeg).read_bytes()
    with pytest.raises(BadMediaError):
        decode_image(heic[: len(heic) // 3], 10**8)
    dng = write_dng(tmp_path / "a.dng", Image.open(jpeg)).read_bytes()
    with pytest.raises(BadMediaError):
        decode_image(dng[:200], 10**8)


def test_heic_and_raw_are_indexed_and_found_by_example(tmp_path, tiny_spec):
    data, src = tmp_path / "data", tmp_path / "src"
    for i in range(4):
        make_photo(data / f"p{i}.jpg", 10 + i, size=(160, 96))
    make_heic(data / "phone.heic", make_photo(src / "h.jpg", 20, size=(160, 96)))
    write_dng(data / "camera.dng", Image.open(make_photo(src / "r.jpg", 21, size=(160, 96))))
    (data / "broken.heic").write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 40)
    with mmsearch.open(tmp_path / "store", model=tiny_spec) as col:
        report = col.index([data], progress=False, ocr=False)
        assert (report.added, report.failed) == (6, 1)
        assert report.failures[0][0].endswith("broken.heic")
        for example, name in ((src / "h.jpg", "phone.heic"), (src / "r.jpg", "camera.dng")):
            top = col.search(image=example, k=1)[0]
            assert Path(top.path).name == name
        dng = col.search(image=src / "r.jpg", k=1)[0]
        assert dng.metadata["camera_make"] == "MmsearchCam"
