"""Run a parsed query on a snapshot: candidates per channel, exact fused scores, cutoff,
optional rerank, sort, page.

Scoring (fusion "sum"):

1. row score: each positive part's cosine is calibrated to a z-score for its (kind, row
   channel) pair and the parts are combined as Stouffer's weighted z,
   `sum(w_p z_p) / sqrt(sum(w_p^2))` (one part: its own z), minus each negative's
   `w_n * max(z_n, 0)` (a row is penalised only as far as it looks like the negative).
2. item score: per channel, the item's best row; then Stouffer again over the channels
   the item has, weighted by the channel weights. One channel: that channel's z. So an item
   matching in two channels (a product's photo and its title) scores above one matching in
   one, and the result stays on the z scale that `min_score` refers to. A channel that
   only some items have (words read in a picture, speech, tags) counts for an item only
   where it raises its score (`counted_channels`): a photo is not ranked down for the
   unrelated words printed in it.

Fusion "rrf": per channel, items ranked by their best row; score `sum_c w_c / (60 + rank_c)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmsearch.arrow_numpy import numpy_column
from mmsearch.errors import UsageError
from mmsearch.planner import hubness
from mmsearch.planner.calibration import Calibration
from mmsearch.planner.groups import Layout, layout
from mmsearch.planner.query import Query, SortKey
from mmsearch.view.snapshot import HIDDEN_COLUMNS, Snapshot

#: Candidate items scored exactly per query; pages within it never overlap.
POOL = 64
#: With `sort`, this many best items (above min_score) are ordered by the column.
SORT_POOL = 1000
RRF_K = 60


@dataclass
class Hit:
    """One scored item: its representative row (best moment) and score."""

    item: int
    row: int
    score: float
    similarity: float = 0.0
    explain: dict[str, Any] = field(default_factory=dict)


Reranker = Callable[[list[Hit]], list[Hit]]


def pool_size(query: Query, rerank: int = 0) -> int:
    """How many items to score: a fixed bucket, so consecutive pages see the same pool."""
    needed = max(query.k + query.offset, rerank)
    pool = POOL
    while pool < needed:
        pool *= 2
    return max(pool, SORT_POOL) if query.sort else pool


def execute(snap: Snapshot, query: Query, calibration: Calibration,
            allowed: np.ndarray | None, rerank: Reranker | None = None,
            rerank_n: int = 0, bonus: Mapping[int, float] | None = None) -> list[Hit]:
    """The page of hits for `query` (best first, or in `query.sort` order).

    `bonus` (row -> extra z) is evidence from outside the main space (word matches in
    transcripts, a side space's hits): those rows' items become candidates and the rows
    score that much more.
    """
    lay = layout(snap)
    present = lay.names
    channels = [c for c in present if query.channel_weight(c) > 0]
    if not channels and present:
        raise UsageError(f"every channel of this store has weight 0 (channels: "
                         f"{', '.join(present)})")
    pool = pool_size(query, rerank_n)
    items = candidate_items(snap, lay, query, channels, allowed, pool)
    if bonus:
        items = np.union1d(items, lay.item[np.fromiter(bonus, np.int64, len(bonus))])
    hits = score_items(snap, lay, query, calibration, items, allowed, channels,
                       bonus)[:pool]
    if query.min_score is not None:
        hits = [h for h in hits if h.score >= query.min_score]
    if rerank is not None and rerank_n > 0 and hits:
        hits = rerank(hits)
    if query.sort is not None:
        hits = sort_hits(snap, hits, query.sort)
    return hits[query.offset:query.offset + query.k]


def candidate_items(snap: Snapshot, lay: Layout, query: Query, channels: list[str],
                    allowed: np.ndarray | None, pool: int) -> np.ndarray:
    """Item codes worth scoring: the index's best rows for the positives, per channel."""
    vector = query.vector()
    if len(lay.names) == 1 and len(channels) == 1:
        searches = [allowed]  # the common case: one channel, no routing needed
    else:
        searches = []
        for c in channels:
            rows = lay.channel_rows(c)
            searches.append(rows if allowed is None else np.intersect1d(rows, allowed,
                                                                        assume_unique=True))
    found: list[np.ndarray] = []
    rows_per_item = max(1, len(lay.item) // max(len(lay.starts) - 1, 1))
    for rows in searches:
        total = len(snap) if rows is None else len(rows)
        fetch = pool * rows_per_item  # moments: about `pool` items in the first fetch
        while total:
            _, hit = snap.index.search(vector[None, :], min(fetch, total), rows)
            hit = hit[0][hit[0] >= 0]
            items, first = np.unique(lay.item[hit], return_index=True)
            if len(items) >= pool or fetch >= total or len(hit) < min(fetch, total):
                found.append(items[np.argsort(first)][:pool])  # the pool best, in rank order
                break
            fetch *= 4
    return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)


def score_items(snap: Snapshot, lay: Layout, query: Query, calibration: Calibration,
                items: np.ndarray, allowed: np.ndarray | None,
                channels: list[str], bonus: Mapping[int, float] | None = None) -> list[Hit]:
    """Exact fused scores of the candidate items, best first (ties by id)."""
    rows = lay.rows_of(items)
    if allowed is not None:
        rows = rows[np.isin(rows, allowed, assume_unique=True)]
    rows = rows[np.isin(lay.channel[rows], channels)]
    if not len(rows):
        return []
    row_channel = lay.channel[rows]
    vectors = snap.vectors.take(rows)
    row_score, details = score_rows(vectors, row_channel, query, calibration,
                                    hub_penalty(snap, query, rows, vectors, row_channel))
    if bonus:
        row_score = row_score + np.array([bonus.get(int(r), 0.0) for r in rows])
    similarity = vectors @ query.vector()
    row_item = lay.item[rows]
    ch_names, ch_code = np.unique(row_channel, return_inverse=True)
    # each item's best row per channel, grouped by item
    order = np.lexsort((-row_score, ch_code, row_item))
    first = np.ones(len(order), dtype=bool)
    first[1:] = (np.diff(row_item[order]) != 0) | (np.diff(ch_code[order]) != 0)
    best = order[first]
    weight = np.array([query.channel_weight(c) for c in ch_names])[ch_code[best]]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(row_item[best])) + 1])
    ends = np.append(starts[1:], len(best))
    if query.fusion == "rrf":
        contrib = _rrf(row_item[best], ch_code[best], row_score[best], weight)
        norms = np.ones(len(starts))
        counted = np.ones(len(best), dtype=bool)
    else:
        universal = np.array([lay.universal(str(c)) for c in ch_names])[ch_code[best]]
        counted = counted_channels(row_score[best], weight, universal, starts, ends)
        contrib = np.where(counted, weight * row_score[best], 0.0)
        norms = np.sqrt(np.add.reduceat(np.where(counted, weight ** 2, 0.0), starts))
    scores = np.add.reduceat(contrib, starts) / norms
    # each item's representative row (the moment shown): the row contributing most, its
    # score times its channel's weight (same item order)
    row_weight = np.array([query.channel_weight(c) for c in ch_names])[ch_code]
    by_item = np.lexsort((-(row_weight * row_score), row_item))
    head = np.ones(len(by_item), dtype=bool)
    head[1:] = np.diff(row_item[by_item]) != 0
    tops = by_item[head]
    ids = snap.table.column("id").take(numpy_column(rows[tops].astype(np.int64))).to_pylist()
    hits = []
    for i in sorted(range(len(starts)), key=lambda i: (-scores[i], ids[i])):
        hit = Hit(int(row_item[tops[i]]), int(rows[tops[i]]), float(scores[i]),
                  float(similarity[tops[i]]))
        if query.explain:
            group = slice(starts[i], ends[i])
            hit.explain = _explain(query, best[group], ch_names, ch_code, row_score,
                                   contrib[group] / norms[i], details, rows, snap,
                                   counted[group])
            hit.explain["score"] = round(float(scores[i]), 4)
        hits.append(hit)
    return hits


def hub_penalty(snap: Snapshot, query: Query, rows: np.ndarray, vectors: np.ndarray,
                row_channel: np.ndarray) -> np.ndarray | None:
    """What the hubness correction takes off text parts' cosines on these rows (None: the
    model has no query bank or the query no text)."""
    prior = hubness.load(query.hub) if query.hub else None
    if prior is None or all(p.kind != "text" for p in query.positives + query.negatives):
        return None
    return hubness.penalties(snap, prior, rows, vectors, row_channel == "visual")


def counted_channels(z: np.ndarray, weight: np.ndarray, universal: np.ndarray,
                     starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Which of each item's channel entries (grouped by item) its score counts.

    Channels every item has always count. A channel only some items have counts for an
    item only where it raises the item's Stouffer z: taken best first while each one
    raises it (an item with none of the former starts from its best entry). So a photo is
    never ranked down for the unrelated words printed in it, while words that match the
    query add to it.
    """
    counted = universal | (ends - starts == 1)[np.repeat(np.arange(len(starts)),
                                                         ends - starts)]
    if counted.all():  # the usual case: no item with a channel to decide on
        return counted
    undecided = np.flatnonzero(np.logical_or.reduceat(~counted, starts))
    for lo, hi in zip(starts[undecided].tolist(), ends[undecided].tolist(), strict=True):
        optional = sorted((i for i in range(lo, hi) if not universal[i]), key=lambda i: -z[i])
        if not counted[lo:hi].any():
            counted[optional[0]] = True
            optional = optional[1:]
        num = float(np.dot(weight[lo:hi][counted[lo:hi]], z[lo:hi][counted[lo:hi]]))
        den = float(np.sum(weight[lo:hi][counted[lo:hi]] ** 2))
        for i in optional:
            w = float(weight[i])
            if (num + w * z[i]) / np.sqrt(den + w * w) <= num / np.sqrt(den):
                break
            counted[i] = True
            num, den = num + w * z[i], den + w * w
    return counted


def score_rows(vectors: np.ndarray, row_channel: np.ndarray, query: Query,
               calibration: Calibration, penalty: np.ndarray | None = None
               ) -> tuple[np.ndarray, dict[str, Any]]:
    """Row scores (weighted z of positives minus negative penalties) and per-part details.

    `penalty` (per row, from `hub_penalty`) is taken off the text parts' cosines before
    calibration; `details["cos"]` keeps the raw cosines."""
    parts = query.positives + query.negatives
    cos = vectors @ np.stack([p.vector for p in parts]).T  # rows x parts
    corrected = cos
    if penalty is not None:
        text = np.array([p.kind == "text" for p in parts])
        corrected = cos - np.outer(penalty, text)
    z = np.empty_like(cos)
    measured: dict[str, bool] = {}
    for channel in np.unique(row_channel):
        at = row_channel == channel
        for j, part in enumerate(parts):
            stats, ok = calibration.get(part.kind, str(channel))
            z[at, j] = stats.z(corrected[at, j])
            measured[f"{part.kind}>{channel}"] = ok
    npos = len(query.positives)
    w_pos = np.array([p.weight for p in query.positives])
    score = z[:, :npos] @ w_pos / np.sqrt(np.sum(w_pos ** 2))
    if query.negatives:
        w_neg = np.array([p.weight for p in query.negatives])
        score = score - np.maximum(z[:, npos:], 0.0) @ w_neg
    return score, {"cos": cos, "z": z, "measured": measured, "hub": penalty}


def _rrf(best_item: np.ndarray, ch: np.ndarray, score: np.ndarray,
         weights: np.ndarray) -> np.ndarray:
    """Each (item, channel) entry's reciprocal-rank contribution within its channel."""
    contrib = np.zeros(len(best_item))
    for c in np.unique(ch):
        at = np.flatnonzero(ch == c)
        order = at[np.lexsort((best_item[at], -score[at]))]
        contrib[order] = weights[order] / (RRF_K + np.arange(1, len(order) + 1))
    return contrib


def _explain(query: Query, group: np.ndarray, ch_names: np.ndarray, ch_code: np.ndarray,
             row_score: np.ndarray, contrib: np.ndarray, details: dict[str, Any],
             rows: np.ndarray, snap: Snapshot, counted: np.ndarray) -> dict[str, Any]:
    parts = query.positives + query.negatives
    out: dict[str, Any] = {"fusion": query.fusion, "channels": {}}
    for g, c, used in zip(group, contrib, counted, strict=True):
        channel = str(ch_names[ch_code[g]])
        entry: dict[str, Any] = {
            "weight": query.channel_weight(channel), "score": round(float(row_score[g]), 4),
            "contribution": round(float(c), 4),
            "parts": {p.label: {"cosine": round(float(details["cos"][g, j]), 4),
                                "z": round(float(details["z"][g, j]), 4), "weight": p.weight}
                      for j, p in enumerate(parts)}}
        start = snap.table.column("start_s")[int(rows[g])].as_py() \
            if "start_s" in snap.table.column_names else None
        if start is not None:
            entry["start_s"] = start
        if not used:  # a channel this item has that would only lower its score
            entry["counted"] = False
        if details["hub"] is not None and details["hub"][g]:
            entry["hubness_penalty"] = round(float(details["hub"][g]), 4)
        out["channels"][channel] = entry
    out["uncalibrated"] = sorted(k for k, ok in details["measured"].items() if not ok)
    return out


def sort_hits(snap: Snapshot, hits: list[Hit], sort: SortKey) -> list[Hit]:
    """Hits ordered by a metadata column (nulls last; ties keep relevance order)."""
    names = [c for c in snap.table.column_names if c not in HIDDEN_COLUMNS]
    if sort.column not in names:
        raise UsageError(f"cannot sort by {sort.column!r}: no such column "
                         f"(columns: {', '.join(names)})")
    if not hits:
        return hits
    column = snap.table.column(sort.column)
    values = [column[h.row].as_py() for h in hits]
    present = [(v, h) for v, h in zip(values, hits, strict=True) if v is not None]
    missing = [h for v, h in zip(values, hits, strict=True) if v is None]
    try:
        present.sort(key=lambda vh: vh[0], reverse=sort.descending)
    except TypeError as e:
        raise UsageError(f"cannot sort by {sort.column!r}: {e}") from None
    return [h for _, h in present] + missing
