"""Rows grouped into items (rows sharing an `id`) and each row's channel, per snapshot."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmsearch.arrow_numpy import column_numpy, labels_numpy
from mmsearch.view.snapshot import Snapshot


@dataclass
class Layout:
    """Item codes and channels of a snapshot's rows (row positions index every array)."""

    item: np.ndarray          # item code of each row
    order: np.ndarray         # row positions sorted by item code
    starts: np.ndarray        # order[starts[i]:starts[i + 1]] are the rows of item i
    channel: np.ndarray       # channel name of each row (str array)
    names: list[str] = field(default_factory=list)  # the distinct channels, sorted
    _by_channel: dict[str, np.ndarray] = field(default_factory=dict)
    _universal: dict[str, bool] = field(default_factory=dict)

    def channel_rows(self, channel: str) -> np.ndarray:
        """Sorted row positions of one channel."""
        if channel not in self._by_channel:
            self._by_channel[channel] = np.flatnonzero(self.channel == channel)
        return self._by_channel[channel]

    def universal(self, channel: str) -> bool:
        """Whether every item has a row in this channel (a catalog's photo and title);
        channels that only some items have (words read in a picture, speech, sound tags)
        count for an item only where they raise its score (`plan.counted_channels`)."""
        if channel not in self._universal:
            rows = self.channel_rows(channel)
            self._universal[channel] = len(rows) == len(self.item) or bool(np.bincount(
                self.item[rows], minlength=len(self.starts) - 1).all())
        return self._universal[channel]

    def rows_of(self, items: np.ndarray) -> np.ndarray:
        """All row positions of the given item codes, grouped by item."""
        if not len(items):
            return np.zeros(0, np.int64)
        return np.concatenate([self.order[self.starts[i]:self.starts[i + 1]] for i in items])


_CACHE: weakref.WeakKeyDictionary[Snapshot, Layout] = weakref.WeakKeyDictionary()


def layout(snap: Snapshot) -> Layout:
    """The snapshot's layout, computed once per snapshot (hash-based, O(rows))."""
    found = _CACHE.get(snap)
    if found is None:
        found = _CACHE[snap] = build_layout(snap.table)
    return found


def build_layout(table: pa.Table) -> Layout:
    ids = table.column("id").combine_chunks() if len(table) else pa.array([], pa.string())
    codes = column_numpy(pc.dictionary_encode(ids).indices).astype(np.int64)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=int(codes.max()) + 1 if len(codes) else 0)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    channel = row_channels(table)
    return Layout(codes, order, starts, channel, sorted(set(np.unique(channel).tolist())))


def row_channels(table: pa.Table) -> np.ndarray:
    """Each row's channel; null (stores older than the column) read from its modality."""
    n = len(table)
    modality = (labels_numpy(table.column("modality"))
                if "modality" in table.column_names else np.full(n, "image", object))
    fallback = np.where(modality == "text", "text", "visual")
    if "channel" not in table.column_names:
        return fallback.astype(str)
    channel = labels_numpy(table.column("channel"))  # null: ""
    return np.where(channel == "", fallback, channel).astype(str)
