"""The vectors of a generation's live rows, left on disk (memory-mapped) and gathered on demand.

A store's vectors live in one `.npy` file per segment. Loading them all into RAM costs
4 × dim bytes per row (2 KB for 512-d), 20 GB for 10M rows; instead `LiveVectors` keeps one
read-only memory map per segment plus the positions of the live rows in it, and copies
only the rows asked for (`take`) or one block at a time (`chunks`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


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
