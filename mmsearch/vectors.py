"""The vectors of a generation's live rows, left on disk (memory-mapped) and gathered on demand.

A store's vectors live in one `.npy` file per segment. Loading them all into RAM costs
4 × dim bytes per row (2 KB for 512-d), 20 GB for 10M rows; instead `LiveVectors` keeps one
read-only memory map per segment plus the positions of the live rows in it, and copies
only the rows asked for (`take`) or one block at a time (`chunks`).
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import threading
from collections.abc import Iterator

import numpy as np

log = logging.getLogger(__name__)

#: Linux's madvise(2) advice that maps a range's pages in (reading what is not cached).
_MADV_POPULATE_READ = 22
#: Bytes mapped per madvise call (the background thread's steps).
_PREFAULT_STEP = 64 << 20
#: Address ranges already mapped in (or being mapped) by this process.
_prefaulted: set[tuple[int, int]] = set()
_prefault_lock = threading.Lock()


class LiveVectors:
    """Row-addressable vectors spread over segment memmaps, deleted rows skipped.

    Args:
        parts: one (rows, dim) float32 array per segment (usually a read-only memmap).
        keeps: per part, the positions of its live rows (sorted), or None when all are live.
        dim: vector width (used when there are no parts).
    """

    def __init__(self, parts: list[np.ndarray], keeps: list[np.ndarray | None], dim: int) -> None:
        # plain views of the memmaps (same mapping): indexing the memmap subclass is slower
        self.parts = [p.view(np.ndarray) if isinstance(p, np.memmap) else p for p in parts]
        self.keeps = keeps
        self.dim = int(parts[0].shape[1]) if parts else int(dim)
        counts = [len(p) if k is None else len(k) for p, k in zip(parts, keeps, strict=True)]
        self.offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
        self._span: _Span | None = None  # (built on the first `dot`)

    @classmethod
    def from_array(cls, vectors: np.ndarray) -> LiveVectors:
        vectors = np.asarray(vectors, dtype=np.float32)
        return cls([vectors] if len(vectors) else [], [None] if len(vectors) else [],
                   vectors.shape[1] if vectors.ndim == 2 else 0)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.dim)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Copy the given row positions into a new (len(rows), dim) float32 array."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        if not len(rows):
            return out
        if len(self.parts) == 1:
            self._take_part(0, rows, np.arange(len(rows)), out)
            return out
        seg = np.searchsorted(self.offsets, rows, side="right") - 1
        for s in np.flatnonzero(np.bincount(seg, minlength=len(self.parts))):  # (np.unique
            # imports numpy.ma on its first call: 30-100 ms of a first search)
            at = np.flatnonzero(seg == s)
            self._take_part(int(s), rows[at] - self.offsets[s], at, out)
        return out

    def dot(self, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        """`take(rows) @ q` for a few rows: one gather and one product whatever the number
        of parts (through `_span`), else a gather per part."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(self.parts) == 1 and self.keeps[0] is None:
            return self.parts[0][rows] @ q
        span = self.span()
        if span:
            at = span.shift[np.searchsorted(self.offsets, rows, side="right") - 1] + rows * self.dim
            return span.rows[at] @ q
        out = np.empty(len(rows), dtype=np.float32)
        order = np.argsort(rows)  # (ascending reads, kinder to the page cache)
        ordered = rows[order]
        bounds = np.searchsorted(ordered, self.offsets).tolist()
        for s, (part, keep) in enumerate(zip(self.parts, self.keeps, strict=True)):
            lo, hi = bounds[s], bounds[s + 1]
            if lo < hi:
                local = ordered[lo:hi] - self.offsets[s]
                out[order[lo:hi]] = part[local if keep is None else keep[local]] @ q
        return out

    def span(self) -> _Span:
        """One view over all parts' rows (made once; falsy where it cannot be made)."""
        span = self._span
        if span is None:
            span = self._span = _Span.over(self)
        return span

    def prefault(self) -> threading.Thread | None:
        """Map the memory-mapped parts' pages in, in a background thread (Linux).

        A search re-scores a few hundred rows scattered over the segment files; each row
        first touched in a process costs a page fault (~1 µs on a quiet machine, tens of
        µs per query at 1M rows). `madvise(MADV_POPULATE_READ)` maps the pages ahead, as
        the page cache holds them: file-backed memory the kernel may reclaim, not the
        process's own. Skipped when the parts exceed half the available memory, and for
        ranges this process mapped in before. Returns the thread (None: nothing to do)."""
        ranges = []
        for part in self.parts:
            if not _is_mmap(part):
                continue
            lo = part.__array_interface__["data"][0]
            ranges.append((lo, lo + part.nbytes))
        with _prefault_lock:
            ranges = [r for r in ranges if r not in _prefaulted]
            if not ranges or sum(hi - lo for lo, hi in ranges) > _available() // 2:
                return None
            _prefaulted.update(ranges)
        thread = threading.Thread(target=_populate, args=(ranges, self.parts),
                                  name="mmsearch-prefault", daemon=True)
        thread.start()
        return thread

    def _take_part(self, s: int, local: np.ndarray, at: np.ndarray, out: np.ndarray) -> None:
        keep = self.keeps[s]
        if keep is not None:
            local = keep[local]
        part = self.parts[s]
        if len(local) <= 256:
            out[at] = part[local]
            return
        order = np.argsort(local, kind="stable")  # ascending reads are kinder to the page cache
        out[at[order]] = part[local[order]]

    def chunks(self, size: int = 65536) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, block) pairs covering all rows in order, each block in RAM."""
        start = 0
        for part, keep in zip(self.parts, self.keeps, strict=True):
            n = len(part) if keep is None else len(keep)
            for lo in range(0, n, size):
                hi = min(n, lo + size)
                block = part[lo:hi] if keep is None else part[keep[lo:hi]]
                yield start + lo, np.ascontiguousarray(block, dtype=np.float32)
            start += n

    def to_array(self) -> np.ndarray:
        """All rows in one contiguous in-RAM array (only for small collections)."""
        out = np.empty((len(self), self.dim), dtype=np.float32)
        for start, block in self.chunks():
            out[start:start + len(block)] = block
        return out

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        arr = self.to_array()
        return arr if dtype is None else arr.astype(dtype)

    def __getitem__(self, rows: object) -> np.ndarray:
        if isinstance(rows, slice):
            return self.take(np.arange(len(self))[rows])
        if isinstance(rows, (int, np.integer)):
            return self.take(np.array([rows]))[0]
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return self.take(rows)


class _Span:
    """A read-only view over the address range of several parts: "row" e of `rows` is the
    `dim` floats starting at float e (strides of one float), so one gather reads rows of
    every part. Only rows inside a part are ever read through it (the gaps between the
    parts' mappings are never touched); the parts stay referenced by their `LiveVectors`.
    Falsy (`none`) when the parts are not all C-contiguous float32 without deleted rows.

    `floats` is the whole range as one flat array; when every part starts a whole number
    of rows after the first (`row_shift` not None: usual for 512-d rows, as mappings are
    page-aligned), live row r is row `row_shift[part] + r` of `floats` read as (·, dim):
    FAISS's by-index loops then read every part in one call."""

    def __init__(self, rows: np.ndarray | None, shift: np.ndarray | None,
                 floats: np.ndarray | None = None, dim: int = 0) -> None:
        self.rows, self.shift, self.floats = rows, shift, floats
        self.row_shift = (shift // dim if shift is not None and dim
                          and not (shift % dim).any() else None)

    def row_ids(self, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Rows of `floats` (as (·, dim)) of live rows (any shape; -1 stays -1); needs
        `row_shift`."""
        assert self.row_shift is not None
        seg = np.searchsorted(offsets, rows, side="right") - 1
        return np.where(rows >= 0, self.row_shift[np.maximum(seg, 0)] + rows, -1)

    def __bool__(self) -> bool:
        return self.rows is not None

    @classmethod
    def over(cls, vectors: LiveVectors) -> _Span:
        parts, dim = vectors.parts, vectors.dim
        if any(k is not None for k in vectors.keeps) or not all(
                p.dtype == np.float32 and p.flags.c_contiguous and p.ndim == 2
                and p.shape[1] == dim and len(p) for p in parts):
            return cls(None, None)
        starts = [p.__array_interface__["data"][0] for p in parts]
        base = min(starts)
        end = max(a + p.nbytes for a, p in zip(starts, parts, strict=True))
        if any((a - base) % 4 for a in starts):
            return cls(None, None)
        floats = np.frombuffer((ctypes.c_float * ((end - base) // 4)).from_address(base),
                               dtype=np.float32)
        rows = np.lib.stride_tricks.as_strided(floats, (len(floats) - dim + 1, dim), (4, 4),
                                               writeable=False)
        shift = np.array([(a - base) // 4 - off * dim for a, off in
                          zip(starts, vectors.offsets[:-1].tolist(), strict=True)], np.int64)
        return cls(rows, shift, floats, dim)


def _is_mmap(part: np.ndarray) -> bool:
    """Whether an array's memory belongs to a memory map (is a view of one)."""
    base: object = part
    while base is not None:
        if isinstance(base, np.memmap | mmap.mmap):
            return True
        base = getattr(base, "base", None)
    return False


def _available() -> int:
    """MemAvailable of /proc/meminfo in bytes (0 where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _populate(ranges: list[tuple[int, int]], keep_alive: list[np.ndarray]) -> None:
    """madvise(MADV_POPULATE_READ) over the ranges, a step at a time (ctypes releases the
    GIL meanwhile). `keep_alive` holds the mappings until done."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    except (OSError, AttributeError):
        return
    page = os.sysconf("SC_PAGE_SIZE")
    for lo, hi in ranges:
        start = lo - lo % page
        while start < hi:
            size = min(_PREFAULT_STEP, hi - start)
            if madvise(start, size, _MADV_POPULATE_READ) != 0:  # an old kernel: no matter
                log.debug("prefault stopped: errno %d", ctypes.get_errno())
                return
            start += size
    del keep_alive
