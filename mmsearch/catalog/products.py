"""Catalog rows -> products: ids, image paths, text to embed, a content hash per row.

A product becomes up to two store rows sharing its `id`: channel "visual" (the image
embedding) and channel "text" (its text columns joined, embedded with the text tower).
Its `modality` is "image", or "text" when it has no image.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from mmsearch.errors import UsageError

#: Columns the engine writes itself; a catalog column with one of these names must be renamed.
ENGINE_COLUMNS = frozenset({"key", "mtime_ns", "_row", "path", "modality", "channel",
                            "start_s", "end_s", "row_hash", "indexed_at", "vector"})
URL_SCHEMES = ("http://", "https://", "ftp://", "s3://", "gs://", "data:")


@dataclass(frozen=True)
class ProductColumns:
    """Which catalog columns hold the id, the image path and the texts to embed."""

    id_col: str = "id"
    image_col: str | None = None
    text_cols: tuple[str, ...] = ()

    def check(self, table: pa.Table) -> None:
        names = table.column_names
        wanted = [self.id_col, *([self.image_col] if self.image_col else []), *self.text_cols]
        missing = [c for c in wanted if c not in names]
        if missing:
            raise UsageError(f"catalog has no column {', '.join(map(repr, missing))} "
                             f"(columns: {', '.join(names)})")
        if not self.image_col and not self.text_cols:
            raise UsageError("give an image column and/or text columns to embed "
                             "(--image-col, --text-col)")
        clash = sorted(ENGINE_COLUMNS.intersection(names) - {self.image_col})
        if clash:
            raise UsageError(f"catalog columns {', '.join(clash)} are names mmsearch uses "
                             "itself; rename them")
        if table.column(self.id_col).null_count:
            raise UsageError(f"column {self.id_col!r}: every row needs an id")


@dataclass
class Products:
    """Prepared products: metadata rows (`id`, `path`, `row_hash`, user columns), the text
    to embed per product, and rows that cannot be used (id, reason)."""

    table: pa.Table
    texts: list[str | None]
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return self.table.column("id").to_pylist()

    @property
    def paths(self) -> list[str | None]:
        return self.table.column("path").to_pylist()

    def take(self, positions: Sequence[int]) -> Products:
        """The products at these positions (failures not carried over)."""
        return Products(self.table.take(pa.array(positions, pa.int64())),
                        [self.texts[i] for i in positions])


def prepare(table: pa.Table, cols: ProductColumns, base_dir: str | os.PathLike[str]) -> Products:
    """Validate a catalog table and compute what each product embeds and its row hash.

    Image paths are taken relative to `base_dir`; URLs and missing files are reported in
    `failed` and their rows dropped (the rest go on).
    """
    cols.check(table)
    ids = [str(v) for v in table.column(cols.id_col).to_pylist()]
    seen: set[str] = set()
    dupes = {i for i in ids if i in seen or seen.add(i)}  # type: ignore[func-returns-value]
    if dupes:
        raise UsageError(f"duplicate ids in column {cols.id_col!r}: "
                         f"{', '.join(sorted(dupes)[:5])}")
    rows = table.to_pylist()
    paths: list[str | None] = []
    texts: list[str | None] = []
    hashes: list[str] = []
    stamps: list[tuple[int, int] | None] = []
    keep: list[int] = []
    failed: list[tuple[str, str]] = []
    for i, (item, row) in enumerate(zip(ids, rows, strict=True)):
        path, stamp, problem = _image(row.get(cols.image_col) if cols.image_col else None,
                                      base_dir)
        text = ". ".join(str(row[c]).strip() for c in cols.text_cols
                         if row[c] is not None and str(row[c]).strip()) or None
        if problem is None and path is None and text is None:
            problem = "nothing to embed: no image and empty text"
        if problem:
            failed.append((item, problem))
            continue
        keep.append(i)
        paths.append(path)
        texts.append(text)
        hashes.append(row_hash(row, cols, stamp))
        stamps.append(stamp)
    out = table.take(pa.array(keep, pa.int64()))
    drop = [c for c in (cols.id_col, cols.image_col) if c and c in out.column_names]
    out = out.drop_columns(drop)
    out = out.add_column(0, "id", pa.array([ids[i] for i in keep], pa.string()))
    out = out.add_column(1, "path", pa.array(paths, pa.string()))
    out = out.append_column("row_hash", pa.array(hashes, pa.string()))
    # the image file's size and time: files are served only while they still match
    out = out.append_column("mtime_ns", pa.array([s and s[1] for s in stamps], pa.int64()))
    if "bytes" not in out.column_names:
        out = out.append_column("bytes", pa.array([s and s[0] for s in stamps], pa.int64()))
    return Products(out, texts, failed)


def row_hash(row: dict[str, Any], cols: ProductColumns, image_stamp: tuple[int, int] | None,
             ) -> str:
    """Hash of a row's values, the embedding choice and the image file's size/mtime."""
    payload = json.dumps([sorted(row.items()), cols.image_col, list(cols.text_cols),
                          image_stamp], default=str, sort_keys=True)
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def _image(value: Any, base_dir: str | os.PathLike[str]
           ) -> tuple[str | None, tuple[int, int] | None, str | None]:
    """(absolute path, (size, mtime_ns), problem) of an image cell; all None when empty."""
    if value is None or not str(value).strip():
        return None, None, None
    text = str(value).strip()
    if text.lower().startswith(URL_SCHEMES):
        return None, None, (f"image {text!r:.80} is a URL; mmsearch does not download "
                            "(fetch the images and give local paths)")
    path = os.path.abspath(os.path.join(os.fspath(base_dir), os.path.expanduser(text)))
    try:
        st = os.stat(path)
    except OSError as e:
        return None, None, f"image {text}: {e.strerror or e}"
    if not Path(path).is_file():
        return None, None, f"image {text}: not a file"
    return path, (st.st_size, st.st_mtime_ns), None


def product_rows(products: Products, visual: Sequence[bool]) -> tuple[pa.Table, list[str]]:
    """Store rows for products: a "visual" row where `visual[i]`, a "text" row where the
    product has text. Returns (rows, channel per row); rows carry `modality`/`channel`."""
    take: list[int] = []
    channels: list[str] = []
    modality: list[str] = []
    for i, (has_image, text) in enumerate(zip(visual, products.texts, strict=True)):
        kind = "image" if has_image else "text"
        if has_image:
            take.append(i)
            channels.append("visual")
            modality.append(kind)
        if text is not None:
            take.append(i)
            channels.append("text")
            modality.append(kind)
    rows = products.table.take(pa.array(take, pa.int64()))
    rows = rows.append_column("modality", pa.array(modality, pa.string()))
    rows = rows.append_column("channel", pa.array(channels, pa.string()))
    return rows, channels
