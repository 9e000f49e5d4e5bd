"""FAISS's OpenMP thread count (per calling thread), so no other module imports faiss."""

from __future__ import annotations

import faiss


def set_threads(n: int) -> None:
    """Let FAISS calls from this thread use `n` OpenMP threads."""
    faiss.omp_set_num_threads(n)
