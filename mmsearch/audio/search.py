"""Search-side audio: plain-word transcript matches, channel counts, query by a sound.

Fusion (a first one; the planner refines it): the main space already holds the visual,
tags and speech rows of every item, so one vector search asks all of them and an item
counts with its best row. On top, a transcript segment holding the query's words scores
`cosine + WORD_WEIGHT * share of the query words it contains`, so an exact phrase match
outranks a merely similar meaning. With a CLAP side space, its hits are one more ranked
list and `fuse_queries` averages an item's scores over the lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from mmsearch.audio.space import ClapSpace
from mmsearch.store.snapshot import Snapshot

WORD_WEIGHT = 0.5
#: Rows looked at for word matches at most (the best-matching ones).
WORD_LIMIT = 1000
_STOP_WORDS = ("a an and are as at be by for from has he in is it its of on or she that the to "
               "was were will with")
_STOP = frozenset(_STOP_WORDS.split(" "))


def query_words(text: str) -> list[str]:
    """Lower-cased words of a query worth matching (no stop words, at least 2 characters)."""
    words = re.findall(r"[\w']+", text.lower())
    return list(dict.fromkeys(w for w in words if len(w) > 1 and w not in _STOP))


def word_matches(snap: Snapshot, text: str,
                 rows: np.ndarray | None = None) -> list[tuple[int, float]]:
    """(row, share of the query words found) for transcript segments holding any of them.

    Words match whole words, case-insensitively (DuckDB regexp on the `transcript` column).
    """
    if "transcript" not in snap.table.column_names:
        return []
    words = query_words(text)
    if not words:
        return []
    hits = " + ".join("CAST(regexp_matches(lower(transcript), ?) AS INTEGER)" for _ in words)
    params: list[object] = [rf"\b{re.escape(w)}\b" for w in words]
    found = snap.sql(f"SELECT _row, {hits} AS n FROM (SELECT _row, transcript FROM items "
                     "WHERE transcript IS NOT NULL) WHERE n > 0 ORDER BY n DESC "
                     f"LIMIT {WORD_LIMIT}", params).fetchall()
    allowed = None if rows is None else set(rows.tolist())
    return [(int(r), n / len(words)) for r, n in found if allowed is None or int(r) in allowed]


def with_word_matches(snap: Snapshot, query: np.ndarray, text: str | None,
                      hits: list[tuple[float, int]], k: int,
                      rows: np.ndarray | None = None) -> list[tuple[float, int]]:
    """Merge word-matched transcript rows into `hits` (score, row): best row per item, top k."""
    matches = word_matches(snap, text, rows) if text else []
    if not matches:
        return hits
    at = np.array([r for r, _ in matches], dtype=np.int64)
    cos = snap.vectors.take(at) @ query
    extra = [(float(c) + WORD_WEIGHT * share, int(r))
             for c, (r, share) in zip(cos, matches, strict=True)]
    return best_per_item(snap, [*hits, *extra], k)


def best_per_item(snap: Snapshot, scored: Iterable[tuple[float, int]],
                  k: int) -> list[tuple[float, int]]:
    """The best (score, row) of each item (rows sharing an `id`), best k items first."""
    scored = sorted(scored, key=lambda h: -h[0])
    if not scored:
        return []
    ids = snap.table.column("id").take(np.array([r for _, r in scored])).to_pylist()
    best: dict[str, tuple[float, int]] = {}
    for hit, item in zip(scored, ids, strict=True):
        best.setdefault(item, hit)
        if len(best) == k:
            break
    return list(best.values())


def fuse_queries(per_query: list[list[tuple[float, int]]], snap: Snapshot,
                 k: int) -> list[tuple[float, int]]:
    """Fuse the best-per-item (score, row) hits of several queries (a sound's tags, words).

    An item scores the mean of its score under each query (that query's lowest returned
    score when the item is not among its hits) and shows its best-scoring row.
    """
    if len(per_query) == 1:
        return per_query[0][:k]
    ids = snap.table.column("id")
    best: list[dict[str, tuple[float, int]]] = []
    for hits in per_query:
        items = ids.take(np.array([r for _, r in hits], dtype=np.int64)).to_pylist()
        found: dict[str, tuple[float, int]] = {}
        for hit, item in zip(hits, items, strict=True):
            if item not in found or hit[0] > found[item][0]:
                found[item] = hit
        best.append(found)
    floors = [min((s for s, _ in found.values()), default=0.0) for found in best]
    fused = []
    for item in set().union(*best):
        scores = [found[item][0] if item in found else floor
                  for found, floor in zip(best, floors, strict=True)]
        row = max(found[item] for found in best if item in found)[1]
        fused.append((sum(scores) / len(scores), row))
    return sorted(fused, key=lambda h: -h[0])[:k]


def clap_hits(snap: Snapshot, space: ClapSpace, query: np.ndarray, k: int,
              rows: np.ndarray | None = None) -> list[tuple[float, int]]:
    """CLAP-space hits as (score, main row): each window maps to its item's tag row of
    the same start (else the item's first row); ids not live in the main store drop out."""
    found = space.search(query, max(4 * k, 50))
    if not found:
        return []
    ids = list({item for _, item, _ in found})
    marks = ", ".join("?" for _ in ids)
    where = f"id IN ({marks})"
    table = snap.sql(f"SELECT _row, id, start_s, channel FROM items WHERE {where} "
                     "ORDER BY _row", ids).fetchall()
    allowed = None if rows is None else set(rows.tolist())
    first: dict[str, int] = {}
    tagged: dict[tuple[str, float | None], int] = {}
    for row, item, start, channel in table:
        if allowed is not None and row not in allowed:
            continue
        first.setdefault(item, row)
        if channel in ("tags", "audio"):
            tagged[(item, start)] = row
    out = []
    for score, item, start in found:
        row = tagged.get((item, start), first.get(item))
        if row is not None:
            out.append((score, int(row)))
    return best_per_item(snap, out, k)


def channel_counts(snap: Snapshot) -> dict[str, int]:
    """Rows per channel (null channel: "text" for text records, else "visual")."""
    if not len(snap):
        return {}
    if "channel" not in snap.table.column_names:
        sql = ("SELECT CASE WHEN modality = 'text' THEN 'text' ELSE 'visual' END, count(*) "
               "FROM items GROUP BY 1 ORDER BY 1")
    else:
        sql = ("SELECT coalesce(channel, CASE WHEN modality = 'text' THEN 'text' "
               "ELSE 'visual' END), count(*) FROM items GROUP BY 1 ORDER BY 1")
    return {str(c): int(n) for c, n in snap.sql(sql).fetchall()}
