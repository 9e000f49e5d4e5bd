"""Exact search: FAISS inner product over unit vectors (cosine similarity)."""

from __future__ import annotations

import faiss
import numpy as np


class FlatIndex:
    """Exact inner-product index over the rows of a snapshot.

    Row positions (0..n-1) are the ids it returns; the snapshot maps them to items.
    """

    kind = "flat"

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.dim = self.vectors.shape[1]
        self.index = faiss.IndexFlatIP(self.dim)
        if len(self.vectors):
            self.index.add(self.vectors)

    def __len__(self) -> int:
        return self.index.ntotal

    def describe(self) -> dict[str, object]:
        return {"type": self.kind, "rows": len(self), "ram_bytes_per_vector": 4 * self.dim}

    def search(self, queries: np.ndarray, k: int,
               rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by inner product, optionally only among `rows`.

        Returns (scores, rows), each (n_queries, k); missing slots have row -1.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if rows is None:
            k = min(k, len(self))
            if k == 0:
                return _empty(len(queries))
            return self.index.search(queries, k)
        rows = np.asarray(rows, dtype=np.int64)
        k = min(k, len(rows))
        if k == 0:
            return _empty(len(queries))
        scores, local = faiss.knn(queries, self.vectors[rows], k, metric=faiss.METRIC_INNER_PRODUCT)
        return scores, np.where(local >= 0, rows[np.maximum(local, 0)], -1)


def _empty(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
