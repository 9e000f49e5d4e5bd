"""Shared pieces of the benchmark scripts: data paths, synthetic vectors, timers, load.

    from benchmarks._harness import DATA, clustered_vectors, interleaved_ms, load_average

Run the scripts from the repository root (`PYTHONPATH=. python benchmarks/x.py`), as the
other shared benchmark modules (`benchmarks.vector_sets`) are imported.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The development data folder: $MMSEARCH_SHARED, else ../shared beside the checkout."""
    from mmsearch.settings import settings

    return settings().shared or REPO.parent / "shared"


SHARED = shared_dir()
DATA = SHARED / "data"
MODELS = SHARED / "models"


# -- synthetic vectors ------------------------------------------------------------------------
def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, float32."""
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered_vectors(rng: np.random.Generator, n: int, dim: int, centers: int,
                      noise: float) -> np.ndarray:
    """n unit vectors around `centers` random centres (Gaussian noise of `noise` per axis),
    drawn from `rng` (centres, labels, noise in that order)."""
    middle = rng.normal(size=(centers, dim)).astype(np.float32)
    return unit_rows(middle[rng.integers(0, centers, n)] + rng.normal(size=(n, dim)) * noise)


def mixture_vectors(n: int, seed: int, dim: int = 512, centers: int = 1000,
                    rank: int = 16) -> np.ndarray:
    """n unit vectors from a fixed mixture of low-rank clusters (centres and cluster shapes
    from seed 0, the draw from `seed`): harder for IVF-PQ than isotropic clusters."""
    base = np.random.default_rng(0)
    middle = base.standard_normal((centers, dim), dtype=np.float32)
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    shapes = base.standard_normal((centers, rank, dim), dtype=np.float32) / np.sqrt(dim * rank)
    rng = np.random.default_rng(seed)
    labels = np.sort(rng.integers(0, centers, n))
    bounds = np.searchsorted(labels, np.arange(centers + 1))
    out = np.empty((n, dim), np.float32)
    for c in range(centers):
        a, b = bounds[c], bounds[c + 1]
        if a == b:
            continue
        z = rng.standard_normal((b - a, rank), dtype=np.float32) * 0.8
        noise = rng.standard_normal((b - a, dim), dtype=np.float32) * (0.5 / np.sqrt(dim))
        x = middle[c] + z @ shapes[c] + noise
        out[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out[rng.permutation(n)]


# -- timers ------------------------------------------------------------------------------------
def median_s(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds of `repeat` calls of `fn`, and the last call's result."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def latencies_ms(fn: Callable[[Any], Any], inputs: Iterable[Any]) -> list[float]:
    """Milliseconds of `fn(x)` for each input."""
    out = []
    for x in inputs:
        t = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - t) * 1000)
    return out


def interleaved_ms(fns: Sequence[Callable[[Any], Any]], inputs: Iterable[Any]
                   ) -> list[float]:
    """Median milliseconds of each function, timed in turn on every input (so a burst of
    machine load hits all of them alike)."""
    times: list[list[float]] = [[] for _ in fns]
    for x in inputs:
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn(x)
            times[i].append((time.perf_counter() - t) * 1000)
    return [statistics.median(t) for t in times]


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def load_average() -> str:
    """The 1/5/15-minute load averages, for the record (the machine is shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def median_ms(seconds: Sequence[float]) -> float:
    """The median of durations given in seconds, in milliseconds."""
    return 1000 * statistics.median(seconds)
