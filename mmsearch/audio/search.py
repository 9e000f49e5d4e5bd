"""Search-side audio: plain-word transcript matches, the CLAP side space, channel counts.

The main space holds the visual, tags and speech rows of every item, so the planner asks all
of them in one search and fuses their calibrated scores. On top, `word_bonus` and
`clap_bonus` add evidence the main space cannot see, in the planner's z units (the speech
and CLAP channels of `mmsearch.channels.audio` call them): a transcript segment holding the
query's words gets `WORD_BONUS * share of the query words it contains` (an exact phrase outranks a
merely similar meaning), and with a CLAP side space each of its hits adds its z-score within
that search's result list (a first fusion of a second space; CLAP has no stored calibration).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import numpy as np

from mmsearch.audio.space import ClapSpace
from mmsearch.view.snapshot import Snapshot

#: z-score bonus of a transcript segment that holds every query word.
WORD_BONUS = 2.0
#: CLAP hits looked at per query.
CLAP_HITS = 50
#: Rows looked at for word matches at most (the best-matching ones).
WORD_LIMIT = 1000
_STOP_WORDS = ("a an and are as at be by for from has he in is it its of on or she that the to "
               "was were will with")
_STOP = frozenset(_STOP_WORDS.split(" "))


def query_words(text: str) -> list[str]:
    """Lower-cased words of a query worth matching (no stop words, at least 2 characters)."""
    words = re.findall(r"[\w']+", text.lower())
    return list(dict.fromkeys(w for w in words if len(w) > 1 and w not in _STOP))


def word_matches(snap: Snapshot, text: str, rows: np.ndarray | None = None,
                 column: str = "transcript", expr: str | None = None,
                 channel: str | None = None,
                 patterns: Callable[[list[str]], list[str]] | None = None,
                 ) -> list[tuple[int, float]]:
    """(row, share of the query words found) for rows whose `column` holds any of them.

    Words match whole words, case-insensitively (DuckDB regexp on `expr`, an SQL
    expression over the column, default the column itself); `channel`: only rows of it;
    `patterns`: the regexps of the query words (default: each word whole).
    """
    if column not in snap.table.column_names:
        return []
    if snap.table.column(column).null_count == len(snap.table):
        return []  # no transcripts (a photo store): no SQL, so no DuckDB import
    words = query_words(text)
    if not words:
        return []
    hits = " + ".join("CAST(regexp_matches(said, ?) AS INTEGER)" for _ in words)
    params: list[object] = list(patterns(words) if patterns else
                                [rf"\b{re.escape(w)}\b" for w in words])
    only = ""
    if channel is not None:
        only = " AND channel = ?"
        params.append(channel)  # after the word patterns, as in the SQL text
    found = snap.sql(f"SELECT _row, {hits} AS n FROM (SELECT _row, lower({expr or column}) "
                     f"AS said FROM items WHERE {column} IS NOT NULL{only}) WHERE n > 0 "
                     f"ORDER BY n DESC LIMIT {WORD_LIMIT}", params).fetchall()
    allowed = None if rows is None else set(rows.tolist())
    return [(int(r), n / len(words)) for r, n in found if allowed is None or int(r) in allowed]


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


def word_bonus(snap: Snapshot, texts: list[str], rows: np.ndarray | None) -> dict[int, float]:
    """Extra z-score per row: word matches of the query texts in transcripts (the best
    share of each row over the texts). Rows outside `rows` get none."""
    bonus: dict[int, float] = {}
    for text in texts:
        for row, share in word_matches(snap, text, rows):
            bonus[row] = max(bonus.get(row, 0.0), WORD_BONUS * share)
    return bonus


def clap_bonus(snap: Snapshot, space: ClapSpace, query: np.ndarray,
               rows: np.ndarray | None) -> dict[int, float]:
    """Extra z-score per row: CLAP-space hits of `query` (the query in that space), each
    its z-score within this search's hits (positive part only)."""
    hits = clap_hits(snap, space, query, CLAP_HITS, rows)
    if len(hits) < 2:
        return {}
    scores = np.array([score for score, _ in hits])
    z = (scores - scores.mean()) / max(float(scores.std()), 1e-6)
    return {row: max(float(value), 0.0) for (_, row), value in zip(hits, z, strict=True)}


def row_bonus(snap: Snapshot, texts: list[str], rows: np.ndarray | None,
              clap: np.ndarray | None = None,
              space: ClapSpace | None = None) -> dict[int, float]:
    """`word_bonus` plus, with a CLAP query and space, `clap_bonus`, summed per row (what
    the speech and CLAP channels give one store's search)."""
    bonus = word_bonus(snap, texts, rows)
    if clap is not None and space is not None:
        for row, value in clap_bonus(snap, space, clap, rows).items():
            bonus[row] = bonus.get(row, 0.0) + value
    return bonus
