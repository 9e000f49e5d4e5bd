"""Set operations on sorted int64 key arrays by binary search.

`np.isin`, `np.union1d` and `np.setdiff1d` first make both arrays unique (a hash or a sort
of each, every call); a commit on a 100k-row store spent most of its time there. When one
side is already sorted, a `searchsorted` answers membership directly.
"""

from __future__ import annotations

import numpy as np


def in_sorted(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Whether each of `values` is in `sorted_keys` (ascending; duplicates allowed): the
    same answer as `np.isin(values, sorted_keys)`."""
    values = np.asarray(values)
    if not len(sorted_keys) or not len(values):
        return np.zeros(len(values), dtype=bool)
    pos = np.searchsorted(sorted_keys, values)
    np.minimum(pos, len(sorted_keys) - 1, out=pos)
    return sorted_keys[pos] == values


def sorted_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The sorted distinct keys of both arrays, as `np.union1d(a, b)`."""
    merged = np.concatenate([np.asarray(a), np.asarray(b)])
    merged.sort(kind="stable")  # radix sort for integers: linear
    if len(merged) < 2:
        return merged
    return merged[np.concatenate(([True], merged[1:] != merged[:-1]))]
