"""Column types of the rows the engine writes itself (user columns are kept as given).

`channel` says what a row's vector embeds, so the planner can fuse several views of one
item: "visual" (image pixels, a video frame), "text" (a record's text), "speech" (a
transcript segment), "tags" (sound-event tags), "ocr" (text read in a picture), ...
Null in stores written before the column existed: read it as "visual" for image/video
rows and "text" for text rows.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

FILE_SCHEMA = pa.schema([
    ("key", pa.int64()),
    ("id", pa.string()),
    ("path", pa.string()),
    ("modality", pa.string()),
    ("channel", pa.string()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("bytes", pa.int64()),
    ("mtime", pa.timestamp("us")),
    ("mtime_ns", pa.int64()),
    ("content_hash", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("taken_at", pa.timestamp("us")),
    ("camera_make", pa.string()),
    ("camera_model", pa.string()),
    ("gps_lat", pa.float64()),
    ("gps_lon", pa.float64()),
    ("indexed_at", pa.timestamp("us")),
    ("duration_s", pa.float64()),
    ("fps", pa.float64()),
    ("codec", pa.string()),
    ("sample_rate", pa.int32()),
    ("tags", pa.string()),  # channel "tags": "Dog 0.91; Bark 0.85"
    ("transcript", pa.string()),  # channel "speech": the segment's words
    ("ocr", pa.string()),  # text read in the picture (visual and "ocr" rows), a line each
    ("ocr_lines", pa.string()),  # JSON: [{"text", "box": 4 [x, y] corners, "confidence"}]
    # audio and video files: the sound channels computed ("tags,speech"; "" none could
    # run; "-" no sound track); null for other files and stores written before it existed
    ("audio_channels", pa.string()),
])


#: Columns used internally and not shown in results.
HIDDEN_COLUMNS = frozenset({"key", "mtime_ns", "_row", "row_hash"})
#: Columns every result carries as attributes (the rest is metadata).
CORE_COLUMNS = frozenset({"id", "path", "modality", "channel", "start_s", "end_s"})

def file_id(path: str) -> str:
    """Stable item id of a file: a short hash of its absolute path."""
    return hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def utc_naive(ns: int | None = None) -> datetime:
    """A naive UTC datetime from epoch nanoseconds (now when None)."""
    if ns is None:
        return datetime.now(timezone.utc).replace(tzinfo=None)
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).replace(tzinfo=None)


def file_rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (dicts with FILE_SCHEMA fields; missing ones null) as an Arrow table."""
    names = FILE_SCHEMA.names
    return pa.Table.from_pylist([{n: r.get(n) for n in names} for r in rows], schema=FILE_SCHEMA)
