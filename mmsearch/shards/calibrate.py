"""One calibration for all shards, measured over the union of their rows.

Each shard is a normal store and would calibrate itself; merging per-shard top-k lists by
score needs every shard to turn cosines into z-scores the same way, so a sharded store
measures the null distributions once over all shards' rows (`planner.calibration.measure`
with item codes made distinct per shard) and keeps the result in its top-level manifest.
On a store small enough for the measurement to use every row, this is the calibration a
single store holding the same rows measures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmsearch.planner.calibration import Calibration, measure
from mmsearch.planner.groups import Layout
from mmsearch.vectors import LiveVectors


def measure_union(parts: Sequence[tuple[Layout, LiveVectors]],
                  text_probes: np.ndarray | None = None) -> Calibration:
    """Measure over the rows of several shards (each a layout and its live vectors)."""
    parts = [(lay, vec) for lay, vec in parts if len(vec)]
    if not parts:
        return Calibration({})
    offsets = np.cumsum([0] + [len(lay.starts) - 1 for lay, _ in parts[:-1]])
    items = np.concatenate([lay.item + off for (lay, _), off in zip(parts, offsets,
                                                                     strict=True)])
    channels = np.concatenate([lay.channel for lay, _ in parts])
    vectors = LiveVectors([p for _, v in parts for p in v.parts],
                          [k for _, v in parts for k in v.keeps], parts[0][1].dim)
    return measure(vectors, channels, items, text_probes)


def refreshed(current: Calibration, parts: Sequence[tuple[Layout, LiveVectors]],
              text_probes: np.ndarray | None = None) -> Calibration | None:
    """A new calibration when the rows changed enough since `current` (the rule a single
    store applies after each write), else None."""
    rows = sum(len(v) for _, v in parts)
    if not rows:
        return None
    names = {c for lay, v in parts if len(v) for c in lay.names}
    if not current.needs_refresh(rows, names, text_probes is not None):
        return None
    return measure_union(parts, text_probes)
