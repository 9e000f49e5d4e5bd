"""Decode images safely and read their EXIF metadata.

Besides what Pillow reads, phone photos in HEIC/HEIF (through `pillow-heif`, when
installed) and camera RAW files (through `rawpy`/LibRaw: DNG, CR2, CR3, NEF, ARW, ORF,
RW2, RAF, ...; extra `photos`) decode here, with their EXIF. A RAW file is recognised by
its content: Pillow cannot identify it, or reads it as a TIFF that carries DNG or sub-image
tags (its first image is then only a preview).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from mmsearch import limits
from mmsearch.errors import BadMediaError

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_DATETIME_ORIGINAL = 0x9003
_DATETIME = 0x0132
_MAKE = 0x010F
_MODEL = 0x0110
_ORIENTATION = 0x0112
_SUB_IFDS = 0x014A
_DNG_VERSION = 0xC612
#: RAW pictures above this many pixels are demosaiced at half size (4x faster; still
#: larger than what the encoder or the OCR looks at).
RAW_HALF_SIZE_PIXELS = 4_000_000
#: JPEGs whose short side is below this are decoded at full scale (cheap anyway, and
#: their pixels then match a plain PIL decode exactly).
DRAFT_FLOOR = 1024


class ImageTooLarge(BadMediaError):
    """An image whose decoded pixels would exceed the limit `max_image_pixels`."""

    def __init__(self, pixels: int, limit: int) -> None:
        super().__init__(f"image has {pixels:,} pixels to decode, over the limit "
                         f"max_image_pixels={limit:,} (setting MMSEARCH_LIMIT_MAX_IMAGE_PIXELS)")
        self.pixels, self.limit = pixels, limit


@dataclass
class DecodedImage:
    """An RGB image ready for the encoder, with metadata of the original file."""

    image: Image.Image
    meta: dict[str, Any]


def decode_image(data: bytes, max_pixels: int, min_side: int = 0) -> DecodedImage:
    """Decode bytes into an upright RGB image no larger than `max_pixels`.

    With `min_side` > 0, JPEGs whose short side is at least twice `min_side` (and at least
    DRAFT_FLOOR) are decoded
    at a reduced scale (DCT scaling: 1/2, 1/4 or 1/8) that keeps the short side at or above
    `min_side`: a 12-megapixel photo for a 256-pixel model decodes about 10x faster. Huge
    JPEGs are always decoded reduced to fit `max_pixels`. Width and height in the metadata
    are those of the original. Raises BadMediaError on anything unreadable.
    """
    if not data:
        raise BadMediaError("empty file")
    _register_heif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                im = Image.open(io.BytesIO(data))
            except UnidentifiedImageError:
                return decode_raw(data, max_pixels)
            if im.format == "TIFF" and _is_raw_tiff(im):
                return decode_raw(data, max_pixels, _exif_meta(im))
            width, height = im.size
            meta = _exif_meta(im)
            if meta.pop("_orientation", 1) in (5, 6, 7, 8):
                width, height = height, width
            meta.update(width=width, height=height)
            if im.format == "JPEG":
                _draft(im, max_pixels, min_side)
            _check_pixels(im)
            im.seek(0)
            im.load()
            im = ImageOps.exif_transpose(im)
            im = _to_rgb(im)
            if im.width * im.height > max_pixels:
                scale = (max_pixels / (im.width * im.height)) ** 0.5
                im.thumbnail((max(1, int(im.width * scale)), max(1, int(im.height * scale))),
                             Image.Resampling.BICUBIC)
    except Image.DecompressionBombError as e:
        raise BadMediaError(f"image too large to decode safely ({e})") from None
    except UnidentifiedImageError:
        raise BadMediaError("not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise BadMediaError(f"cannot decode image: {e}") from None
    return DecodedImage(im, meta)


def decode_raw(data: bytes, max_pixels: int,
               meta: dict[str, Any] | None = None) -> DecodedImage:
    """Demosaic a camera RAW file (LibRaw: camera white balance, sRGB, 8 bits, upright).

    `meta`: EXIF already read from the file's TIFF structure; else it comes from the
    embedded JPEG preview when there is one. Raises BadMediaError when it is not RAW (or
    rawpy is missing).
    """
    try:
        import rawpy
    except ImportError:
        raise BadMediaError("not a recognised image format (camera RAW files need the "
                            "`photos` extra: pip install \"mmsearch[photos]\")") from None
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            sizes = raw.sizes
            half = sizes.width * sizes.height > RAW_HALF_SIZE_PIXELS
            pixels = sizes.width * sizes.height // (4 if half else 1)
            if pixels > limits.current().max_image_pixels:
                raise ImageTooLarge(pixels, limits.current().max_image_pixels)
            rgb = raw.postprocess(use_camera_wb=True, half_size=half, output_bps=8)
            if meta is None:
                meta = _tiff_meta(data) or _preview_meta(raw)
    except (rawpy.LibRawError, OSError, ValueError) as e:
        if isinstance(e, rawpy.LibRawFileUnsupportedError | rawpy.LibRawIOError) and meta is None:
            # neither Pillow nor LibRaw knows it (LibRaw calls short junk an I/O error)
            raise BadMediaError("not a recognised image format") from None
        raise BadMediaError(f"cannot decode RAW image: {type(e).__name__}: {e}") from None
    im = Image.fromarray(rgb)
    meta = dict(meta or _exif_meta(im))
    meta.pop("_orientation", None)  # LibRaw already turned the picture upright
    scale = 2 if half else 1
    meta.update(width=im.width * scale, height=im.height * scale)
    if im.width * im.height > max_pixels:
        f = (max_pixels / (im.width * im.height)) ** 0.5
        im.thumbnail((max(1, int(im.width * f)), max(1, int(im.height * f))),
                     Image.Resampling.BICUBIC)
    return DecodedImage(im, meta)


def _is_raw_tiff(im: Image.Image) -> bool:
    """A TIFF-structured RAW file (DNG, CR2, NEF, ARW, ...), not a plain TIFF picture."""
    tags = getattr(im, "tag_v2", {})
    return _DNG_VERSION in tags or (_SUB_IFDS in tags and bool(im.getexif().get(0x010F)))


def _tiff_meta(data: bytes) -> dict[str, Any] | None:
    """EXIF of a TIFF-structured RAW file that Pillow cannot open as a picture."""
    if data[:4] not in (b"II*\0", b"MM\0*"):
        return None
    try:
        exif = Image.Exif()
        exif.load(data)
    except Exception:
        return None
    return _exif_meta(exif) if exif else None


def _preview_meta(raw: Any) -> dict[str, Any] | None:
    """EXIF of a RAW file's embedded JPEG preview, when it has one with EXIF."""
    try:
        thumb = raw.extract_thumb()
        if thumb.format.name == "JPEG":
            return _exif_meta(Image.open(io.BytesIO(bytes(thumb.data))))
    except Exception:
        pass
    return None


_HEIF: bool | None = None


def _register_heif() -> None:
    """Let Pillow open HEIC/HEIF pictures when pillow-heif is installed (once)."""
    global _HEIF
    if _HEIF is None:
        try:
            from pillow_heif import register_heif_opener

            register_heif_opener()
            _HEIF = True
        except ImportError:
            _HEIF = False


def _check_pixels(im: Image.Image) -> None:
    """Refuse, from the header, an image whose decode would exceed `max_image_pixels`
    (after `draft`, a JPEG's size is the reduced size it decodes at)."""
    limit = limits.current().max_image_pixels
    w, h = im.size
    if w * h > limit:
        raise ImageTooLarge(w * h, limit)


def _draft(im: Image.Image, max_pixels: int, min_side: int) -> None:
    """Ask the JPEG decoder for the smallest DCT scale that still covers what we need."""
    w, h = im.size
    scale = 1.0
    if min_side and min(w, h) >= max(2 * min_side, DRAFT_FLOOR):
        scale = min_side / min(w, h)
    if w * h * scale * scale > max_pixels:
        scale = (max_pixels / (w * h)) ** 0.5
    if scale < 1.0:
        im.draft("RGB", (max(1, round(w * scale)), max(1, round(h * scale))))


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        return background
    return im.convert("RGB")


def _exif_meta(im: Image.Image | Image.Exif) -> dict[str, Any]:
    meta: dict[str, Any] = {"taken_at": None, "camera_make": None, "camera_model": None,
                            "gps_lat": None, "gps_lon": None}
    try:
        exif = im if isinstance(im, Image.Exif) else im.getexif()
    except Exception:
        return meta
    if not exif:
        return meta
    meta["_orientation"] = exif.get(_ORIENTATION, 1)
    meta["camera_make"] = _text(exif.get(_MAKE))
    meta["camera_model"] = _text(exif.get(_MODEL))
    try:
        sub = exif.get_ifd(_EXIF_IFD)
        meta["taken_at"] = _date(sub.get(_DATETIME_ORIGINAL) or exif.get(_DATETIME))
        gps = exif.get_ifd(_GPS_IFD)
        meta["gps_lat"] = _gps_degrees(gps.get(2), gps.get(1))
        meta["gps_lon"] = _gps_degrees(gps.get(4), gps.get(3))
    except Exception:
        pass
    return meta


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.strip("\x00 ").strip()
    return value or None


def _date(value: Any) -> datetime | None:
    text = _text(value)
    if not text:
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d"):
        try:
            return datetime.strptime(text[:19], fmt)
        except ValueError:
            continue
    return None


def _gps_degrees(dms: Any, ref: Any) -> float | None:
    try:
        d, m, s = (float(x) for x in dms)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = d + m / 60 + s / 3600
    return -value if _text(ref) in ("S", "W") else value
