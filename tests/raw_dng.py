"""Write a small camera RAW file (a DNG: a 16-bit RGGB Bayer mosaic) from a picture.

No Python package writes camera RAW files, so tests make one: the picture's linear-light
colours are sampled into an RGGB colour-filter array and written as an uncompressed
DNG 1.4 (TIFF structure, CFA photometric interpretation, an sRGB colour matrix, camera
make/model and date in the main IFD), which LibRaw (rawpy) demosaics like a camera's.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from PIL import Image

_ASCII, _SHORT, _LONG, _BYTE, _RATIONAL, _SRATIONAL = 2, 3, 4, 1, 5, 10
_SIZES = {_BYTE: 1, _ASCII: 1, _SHORT: 2, _LONG: 4, _RATIONAL: 8, _SRATIONAL: 8}
#: XYZ (D65) -> linear sRGB: DNG's ColorMatrix1 for a "camera" whose raw space is sRGB.
_XYZ_TO_SRGB = (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570)


def write_dng(path: Path, picture: Image.Image, make: str = "MmsearchCam",
              model: str = "Test One", taken: str = "2024:05:06 07:08:09") -> Path:
    """Write `picture` as a Bayer-mosaic DNG at `path` (even width and height)."""
    rgb = np.asarray(picture.convert("RGB"), np.float64) / 255.0
    h, w = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)[:h, :w]
    cfa = np.empty((h, w), np.float64)
    cfa[0::2, 0::2] = linear[0::2, 0::2, 0]  # R
    cfa[0::2, 1::2] = linear[0::2, 1::2, 1]  # G
    cfa[1::2, 0::2] = linear[1::2, 0::2, 1]  # G
    cfa[1::2, 1::2] = linear[1::2, 1::2, 2]  # B
    pixels = (cfa * 65535).round().clip(0, 65535).astype("<u2").tobytes()
    tags: list[tuple[int, int, object]] = [
        (254, _LONG, [0]), (256, _LONG, [w]), (257, _LONG, [h]), (258, _SHORT, [16]),
        (259, _SHORT, [1]), (262, _SHORT, [32803]), (271, _ASCII, make),
        (272, _ASCII, model), (273, _LONG, [0]), (274, _SHORT, [1]), (277, _SHORT, [1]),
        (278, _LONG, [h]), (279, _LONG, [len(pixels)]), (284, _SHORT, [1]),
        (306, _ASCII, taken), (33421, _SHORT, [2, 2]), (33422, _BYTE, [0, 1, 1, 2]),
        (50706, _BYTE, [1, 4, 0, 0]), (50707, _BYTE, [1, 1, 0, 0]),
        (50708, _ASCII, f"{make} {model}"), (50714, _LONG, [0]), (50717, _LONG, [65535]),
        (50721, _SRATIONAL, [(round(v * 10000), 10000) for v in _XYZ_TO_SRGB]),
        (50728, _RATIONAL, [(1, 1)] * 3), (50778, _SHORT, [21]),
    ]
    header = 8
    ifd_size = 2 + 12 * len(tags) + 4
    extra = bytearray()
    data_at = header + ifd_size
    entries = []
    pixel_entry = None
    for tag, kind, value in tags:
        if kind == _ASCII:
            raw = str(value).encode() + b"\0"
            count = len(raw)
        elif kind in (_RATIONAL, _SRATIONAL):
            fmt = "<II" if kind == _RATIONAL else "<ii"
            raw = b"".join(struct.pack(fmt, *pair) for pair in value)  # type: ignore[union-attr]
            count = len(value)  # type: ignore[arg-type]
        else:
            fmt = {_BYTE: "B", _SHORT: "H", _LONG: "I"}[kind]
            raw = struct.pack(f"<{len(value)}{fmt}", *value)  # type: ignore[arg-type]
            count = len(value)  # type: ignore[arg-type]
        if len(raw) <= 4:
            entries.append([tag, kind, count, raw.ljust(4, b"\0")])
        else:
            entries.append([tag, kind, count, struct.pack("<I", data_at + len(extra))])
            extra += raw + (b"\0" if len(raw) % 2 else b"")
        if tag == 273:
            pixel_entry = entries[-1]
    assert pixel_entry is not None
    pixel_entry[3] = struct.pack("<I", data_at + len(extra))
    out = bytearray(b"II*\0" + struct.pack("<I", header))
    out += struct.pack("<H", len(tags))
    for tag, kind, count, value in entries:
        out += struct.pack("<HHI", tag, kind, count) + value
    out += struct.pack("<I", 0)
    out += extra + pixels
    path.write_bytes(bytes(out))
    return path
