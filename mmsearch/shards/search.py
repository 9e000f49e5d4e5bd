"""Search over shards: one step per shard, then a merge that gives the single-store answer.

A single store (`planner.plan.execute`) takes, per channel, the `pool` items whose best
row is most similar to the query vector (the candidates), scores them exactly (calibrated,
fused over channels), and keeps the `pool` best before `min_score`, rerank, sort and
paging. Items never span shards (routing is by id), so an item's exact score is the same
in its shard as in one big store, given one calibration for all shards. What differs is
the candidate set: each shard returns its own `pool` best per channel, a superset of the
global ones. So each shard also reports, per channel, every candidate's best-row
similarity (the key the single store ranked candidates by), and the merge keeps only
items among the global `pool` best per channel: exactly the single store's candidates in
exact mode (with IVF-PQ each shard's candidates are approximate, as a single store's are).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from mmsearch.errors import UsageError
from mmsearch.planner.calibration import Calibration
from mmsearch.planner.groups import Layout, layout
from mmsearch.planner.plan import (
    RRF_K,
    Hit,
    candidate_items,
    hub_penalty,
    score_items,
    score_rows,
    sort_hits,
)
from mmsearch.planner.query import Query
from mmsearch.view.snapshot import HIDDEN_COLUMNS, Snapshot


@dataclass
class ShardHits:
    """One shard's answer: its scored candidates and the keys that select the global ones.

    `hits` carry the shard's own row positions (`Hit.row`) in `generation`."""

    shard: int
    generation: int
    hits: list[Hit] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    #: channel -> (candidate ids, their best-row cosine with the query vector in that channel)
    keys: dict[str, tuple[list[str], np.ndarray]] = field(default_factory=dict)
    #: items found by row bonuses (word matches): always candidates, as in one store
    bonus_ids: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    #: with `query.sort`: the sort column's value of each hit (None: shard lacks it)
    sort_values: list[Any] | None = None
    #: with fusion "rrf": channel -> (ids, each item's best row score there); ranks are
    #: global, so the merge recomputes the fused scores
    rrf: dict[str, tuple[list[str], np.ndarray]] = field(default_factory=dict)


def shard_hits(shard: int, snap: Snapshot, query: Query, calibration: Calibration,
               allowed: np.ndarray | None, pool: int,
               bonus: Mapping[int, float] | None = None) -> ShardHits:
    """Score one shard's candidates for `query` (see the module docstring)."""
    out = ShardHits(shard, snap.generation)
    if not len(snap):
        return out
    lay = layout(snap)
    out.channels = list(lay.names)
    out.columns = [c for c in snap.table.column_names if c not in HIDDEN_COLUMNS]
    channels = [c for c in lay.names if query.channel_weight(c) > 0]
    ids = snap.table.column("id")
    found = []
    vector = query.vector()
    for c in channels:
        items = candidate_items(snap, lay, query, [c], allowed, pool)
        best = _best_similarity(snap, lay, items, c, allowed, vector)
        found.append(items)
        out.keys[c] = (ids.take(lay.order[lay.starts[items]]).to_pylist(), best)
    items = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
    if bonus:
        extra = np.unique(lay.item[np.fromiter(bonus, np.int64, len(bonus))])
        out.bonus_ids = ids.take(lay.order[lay.starts[extra]]).to_pylist()
        items = np.union1d(items, extra)
    out.hits = score_items(snap, lay, query, calibration, items, allowed, channels, bonus)
    rows = np.array([h.row for h in out.hits], dtype=np.int64)
    out.ids = ids.take(rows).to_pylist() if len(rows) else []
    if query.fusion == "rrf":
        out.rrf = _channel_scores(snap, lay, query, calibration, items, allowed, channels,
                                  bonus)
    if query.sort is not None:
        column = query.sort.column
        out.sort_values = (snap.table.column(column).take(rows).to_pylist()
                           if column in snap.table.column_names else [None] * len(rows))
    return out


def _best_similarity(snap: Snapshot, lay: Layout, items: np.ndarray, channel: str,
                     allowed: np.ndarray | None, vector: np.ndarray) -> np.ndarray:
    """Each item's best cosine with `vector` over its rows in `channel` (and `allowed`)."""
    if not len(items):
        return np.zeros(0, np.float32)
    rows = lay.rows_of(items)
    owner = np.repeat(np.arange(len(items)), lay.starts[items + 1] - lay.starts[items])
    keep = lay.channel[rows] == channel
    if allowed is not None:
        keep &= np.isin(rows, allowed)
    rows, owner = rows[keep], owner[keep]
    best = np.full(len(items), -np.inf, np.float32)
    np.maximum.at(best, owner, snap.vectors.take(rows) @ vector)
    return best


def _channel_scores(snap: Snapshot, lay: Layout, query: Query, calibration: Calibration,
                    items: np.ndarray, allowed: np.ndarray | None, channels: list[str],
                    bonus: Mapping[int, float] | None) -> dict[str, tuple[list[str], np.ndarray]]:
    """Per channel, each candidate item's best row score (what RRF ranks items by)."""
    rows = lay.rows_of(items)
    if allowed is not None:
        rows = rows[np.isin(rows, allowed)]
    rows = rows[np.isin(lay.channel[rows], channels)]
    if not len(rows):
        return {}
    vectors = snap.vectors.take(rows)
    score, _ = score_rows(vectors, lay.channel[rows], query, calibration,
                          hub_penalty(snap, query, rows, vectors, lay.channel[rows]))
    if bonus:
        score = score + np.array([bonus.get(int(r), 0.0) for r in rows])
    ids = np.array(snap.table.column("id").take(rows).to_pylist(), dtype=object)
    out = {}
    for c in np.unique(lay.channel[rows]):
        at = np.flatnonzero(lay.channel[rows] == c)
        order = at[np.lexsort((-score[at], lay.item[rows[at]]))]
        first = np.ones(len(order), bool)
        first[1:] = np.diff(lay.item[rows[order]]) != 0
        out[str(c)] = (ids[order[first]].tolist(), score[order[first]])
    return out


def _rrf_scores(parts: Sequence[ShardHits], query: Query, wanted: set[str]) -> dict[str, float]:
    """RRF over the global candidates: per channel, items ranked by best row score."""
    fused: dict[str, float] = {}
    for c in sorted({c for p in parts for c in p.rrf}):
        entries = [(score, i) for p in parts if c in p.rrf
                   for i, score in zip(*p.rrf[c], strict=True) if i in wanted]
        entries.sort(key=lambda e: (-e[0], e[1]))
        weight = query.channel_weight(c)
        for rank, (_, i) in enumerate(entries, start=1):
            fused[i] = fused.get(i, 0.0) + weight / (RRF_K + rank)
    return fused


@dataclass
class Merged:
    """The merged page: hits in answer order, each with (shard, row) of its record."""

    hits: list[Hit]
    origin: list[tuple[int, int]]


class _View:
    """What `rerank_hits` and `sort_hits` read of a snapshot, over merged hits: row i of
    this view is merged hit i."""

    def __init__(self, origin: list[tuple[int, int]],
                 fetch: Callable[[list[tuple[int, int]]], list[dict[str, Any]]],
                 table: pa.Table | None = None) -> None:
        self._origin, self._fetch, self.table = origin, fetch, table

    def records(self, rows: Sequence[int]) -> list[dict[str, Any]]:
        return self._fetch([self._origin[int(r)] for r in rows])


def merge(parts: Sequence[ShardHits], query: Query, pool: int,
          fetch: Callable[[list[tuple[int, int]]], list[dict[str, Any]]],
          rerank: Callable[[list[Hit], Any], list[Hit]] | None = None) -> Merged:
    """The single-store page from the shards' answers.

    `fetch` returns the records of (shard, row) pairs; `rerank(hits, view)` rescores the
    top hits (view: their records by position)."""
    present = sorted({c for p in parts for c in p.channels})
    if present and not any(query.channel_weight(c) > 0 for c in present):
        raise UsageError(f"every channel of this store has weight 0 (channels: "
                         f"{', '.join(present)})")
    wanted = set().union(*(p.bonus_ids for p in parts)) if parts else set()
    for c in {c for p in parts for c in p.keys}:
        ids = [i for p in parts if c in p.keys for i in p.keys[c][0]]
        keys = np.concatenate([p.keys[c][1] for p in parts if c in p.keys])
        order = np.lexsort((np.array(ids, dtype=object).astype(str), -keys))[:pool]
        wanted.update(ids[i] for i in order)
    entries = [(h.score, i, p.shard, h, j) for p in parts
               for j, (h, i) in enumerate(zip(p.hits, p.ids, strict=True)) if i in wanted]
    if query.fusion == "rrf":
        fused = _rrf_scores(parts, query, wanted)
        for e in entries:
            e[3].score = fused.get(e[1], 0.0)
        entries = [(h.score, i, s, h, j) for _, i, s, h, j in entries]
    entries.sort(key=lambda e: (-e[0], e[1]))
    entries = entries[:pool]
    if query.min_score is not None:
        entries = [e for e in entries if e[0] >= query.min_score]
    origin = [(shard, h.row) for _, _, shard, h, _ in entries]
    hits = [Hit(pos, pos, h.score, h.similarity, h.explain)
            for pos, (_, _, _, h, _) in enumerate(entries)]
    view = _View(origin, fetch)
    if rerank is not None and hits:
        hits = rerank(hits, view)
    if query.sort is not None:
        view.table = _sort_table(parts, entries, query.sort.column)
        hits = sort_hits(view, hits, query.sort)  # type: ignore[arg-type]
    page = hits[query.offset:query.offset + query.k]
    return Merged(page, [origin[h.row] for h in page])


def _sort_table(parts: Sequence[ShardHits], entries: list[tuple[Any, ...]],
                column: str) -> pa.Table:
    """A table with the sort column's value per merged hit (other columns empty), so
    `sort_hits` checks and orders exactly as on one snapshot."""
    by_shard = {p.shard: p for p in parts}
    names = sorted({c for p in parts for c in p.columns})
    data: dict[str, Any] = {c: pa.nulls(len(entries)) for c in names}
    if column in names:
        values = [by_shard[shard].sort_values[j]  # type: ignore[index]
                  for _, _, shard, _, j in entries]
        data[column] = pa.array(values)
    return pa.table(data)
