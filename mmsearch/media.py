"""Serve an indexed file only while it is the file that was indexed.

Before a thumbnail is made or a file is sent, its path must still name a regular file
(not a device, pipe or folder: a symlink swapped in to `/dev/zero` is refused) whose
size and modification time match what the store recorded, and, when the store recorded
a content hash, whose bytes still hash to it (files up to `max_media_hash_bytes`; each
file version is hashed once per process). Otherwise `MediaChangedError` (HTTP 409), or
`BadMediaError` when there is no file (HTTP 404).
"""

from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from mmsearch import limits
from mmsearch.errors import BadMediaError, MediaChangedError

_checked: OrderedDict[tuple[str, int, int, int], bool] = OrderedDict()
_checked_lock = threading.Lock()
_CACHE = 4096


@dataclass(frozen=True)
class Recorded:
    """What the store knows of an item's file."""

    path: str
    modality: str = "image"
    bytes: int | None = None
    mtime_ns: int | None = None
    content_hash: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Recorded:
        return cls(row["path"], row.get("modality") or "image", row.get("bytes"),
                   row.get("mtime_ns"), row.get("content_hash"))


def verified(rec: Recorded) -> os.stat_result:
    """The file's stat when it is still the file the store recorded (see module doc)."""
    try:
        st = os.stat(rec.path)
    except OSError as e:
        raise BadMediaError(f"cannot read {rec.path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise BadMediaError(f"{rec.path} is not a regular file any more")
    if rec.bytes is not None and st.st_size != rec.bytes:
        raise MediaChangedError(f"{rec.path} changed since it was indexed ({st.st_size} bytes, "
                                f"{rec.bytes} recorded); re-index it")
    if rec.mtime_ns is not None and st.st_mtime_ns != rec.mtime_ns:
        raise MediaChangedError(f"{rec.path} was modified since it was indexed; re-index it")
    if rec.content_hash and st.st_size <= limits.current().max_media_hash_bytes:
        key = (rec.path, st.st_ino, st.st_size, st.st_mtime_ns)
        with _checked_lock:
            known = _checked.get(key)
        if known is None:
            try:
                known = _content_hash(rec, st.st_size) == rec.content_hash
            except OSError as e:
                raise BadMediaError(f"cannot read {rec.path}: {e.strerror or e}") from None
            with _checked_lock:
                _checked[key] = known
                while len(_checked) > _CACHE:
                    _checked.popitem(last=False)
        if not known:
            raise MediaChangedError(f"{rec.path} holds other bytes than when it was indexed; "
                                    "re-index it")
    return st


def _content_hash(rec: Recorded, size: int) -> str:
    """The hash the indexer records (`ingest.pipeline.content_hash` / `video_hash`)."""
    import hashlib

    from mmsearch.ingest.video import FULL_HASH_BYTES, video_hash

    if rec.modality != "image" or size <= FULL_HASH_BYTES:
        return video_hash(rec.path, size)  # BLAKE2b-128 of the whole file up to 64 MiB
    h = hashlib.blake2b(digest_size=16)
    with open(rec.path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def read_verified(rec: Recorded, max_bytes: int) -> bytes:
    """The bytes of a verified regular file, at most `max_bytes` (BadMediaError beyond)."""
    st = verified(rec)
    if st.st_size > max_bytes:
        raise BadMediaError(f"{rec.path} is {st.st_size:,} bytes, over {max_bytes:,}")
    with open(rec.path, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise BadMediaError(f"{rec.path} is not a regular file any more")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BadMediaError(f"{rec.path} grew past {max_bytes:,} bytes while read")
    return data
