"""Set operations on sorted key arrays give numpy's answers."""

from __future__ import annotations

import numpy as np
import pytest

from mmsearch.sorted_keys import in_sorted, sorted_union


@pytest.mark.parametrize("seed", range(20))
def test_membership_and_union_equal_numpys(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-50, 500, rng.integers(0, 300)).astype(np.int64)  # duplicates, unsorted
    b = np.sort(rng.integers(-50, 500, rng.integers(0, 300))).astype(np.int64)
    assert (in_sorted(a, b) == np.isin(a, b)).all()
    assert (in_sorted(a, np.unique(b)) == np.isin(a, b)).all()
    assert np.array_equal(sorted_union(a, b), np.union1d(a, b))


def test_empty_sides():
    keys = np.array([1, 5, 9], dtype=np.int64)
    assert in_sorted(keys, np.zeros(0, np.int64)).tolist() == [False] * 3
    assert in_sorted(np.zeros(0, np.int64), keys).tolist() == []
    assert sorted_union(np.zeros(0, np.int64), keys).tolist() == [1, 5, 9]
    assert in_sorted(np.array([10, 0, 5]), keys).tolist() == [False, False, True]
