"""The lean query path: plain vector queries answered by one index call, no planner.

A query is plain when it is one vector (or a batch of them) with at most `k`, `offset`,
`filters` and `modality`: no text, image, sound, negatives, sort, rerank, min_score,
explain, channel weights or rrf. On a snapshot whose rows are all in the "visual"
channel, the planner's answer to it is the k + offset items whose best rows the index ranks
first by cosine (ties by id), on the calibrated z scale of (image, visual). So `search`
asks the index for that many rows (more only when items repeat, or for the planner's pool
under a filter; for a batch: one call on the query matrix), scores them and builds
`Result`s for the page only. Anything else returns None and the caller runs the planner; tests
compare both on the same queries.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmsearch.channels import QueryContext, channels
from mmsearch.channels.base import BUILTIN, Channel
from mmsearch.planner.calibration import Calibration, Stats
from mmsearch.planner.plan import POOL
from mmsearch.planner.query import Part, Query
from mmsearch.request import MAX_FILTERS, MAX_K, MAX_OFFSET, SearchRequest, _vector
from mmsearch.results import Result
from mmsearch.view.snapshot import HIDDEN_COLUMNS, Snapshot

#: Keyword options a plain search may have.
PLAIN_OPTIONS = frozenset({"vector", "k", "offset", "filters"})


@dataclass(frozen=True)
class Plain:
    """A plain vector search: unit query vectors (one row each) and the page."""

    vectors: np.ndarray
    request: SearchRequest  # its options (unvalidated copy for the filters and channels)


def from_options(options: Mapping[str, Any]) -> Plain | None:
    """The plain search `Collection.search(**options)` asks for, validated as
    `SearchRequest` would; None when it is not plain or anything is invalid (the full path
    then names the problem)."""
    if not options.keys() <= PLAIN_OPTIONS or options.get("vector") is None:
        return None
    k, offset, filters = options.get("k", 10), options.get("offset", 0), options.get("filters")
    if type(k) is not int or not 1 <= k <= MAX_K or type(offset) is not int \
            or not 0 <= offset <= MAX_OFFSET:
        return None
    if filters is not None and (type(filters) is not dict or len(filters) > MAX_FILTERS):
        return None
    try:
        v = _vector(options["vector"])
    except ValueError:
        return None
    unit = (v / max(math.sqrt(float(v @ v)), 1e-12)).astype(np.float32, copy=False)
    return Plain(unit[None, :], _template().model_copy(
        update={"vector": v, "k": k, "offset": offset, "filters": filters}))


def from_request(req: SearchRequest) -> Plain | None:
    """The plain search a validated request asks for, or None."""
    if (req.vector is None or req.text is not None or req.image is not None
            or req.audio is not None or req.negative or req.where or req.sort
            or req.rerank or req.min_score is not None or req.explain or req.weights
            or req.fusion != "sum"):
        return None
    return Plain(_unit(req.vector[None, :]), req)


def batch(vectors: np.ndarray, options: Mapping[str, Any]) -> Plain | None:
    """A plain search of many query vectors sharing `options`, or None."""
    try:
        rows = [_vector(v) for v in vectors]
    except ValueError:
        return None
    if len({len(r) for r in rows}) != 1:
        return None
    one = from_options({**options, "vector": rows[0]})
    return None if one is None else Plain(_unit(np.stack(rows)), one.request)


def search(snap: Snapshot, plain: Plain, env: Any) -> list[list[Result]] | None:
    """One result page per query vector, as the planner gives it; None when the snapshot
    or the channels need the planner (rows in several channels, a channel that is not
    built in), or the dimension does not fit (the planner says so)."""
    stats = _simple(snap, env)
    if stats is None or plain.vectors.shape[1] != snap.vectors.dim:
        return None
    req = plain.request
    from mmsearch.planner.search import Search, to_result

    allowed = Search(snap, req, env).allowed_rows()
    nq = len(plain.vectors)
    if allowed is not None and not len(allowed):
        return [[] for _ in range(nq)]
    picked = _best_items(snap, plain.vectors, req.k + req.offset, allowed)
    picked = [hits[req.offset:req.offset + req.k] for hits in picked]
    unread = [row for hits in picked for row, _, rec in hits if rec is None]
    records = iter(snap.cells.rows(unread, _columns(snap)) if unread else [])
    ctx = QueryContext(snap, req, [], allowed, env.encoder, {}, env.path, env.device)
    annotate = [c.annotate for c in channels()
                if type(c).annotate is not Channel.annotate]
    out = []
    for hits in picked:
        cos = np.array([c for _, c, _ in hits], dtype=np.float32)
        z = stats.z(cos).tolist()
        results = [to_result(zi, rec if rec is not None else next(records), None, c)
                   for zi, (_, c, rec) in zip(z, hits, strict=True)]
        for hook in annotate:
            results = [hook(r, ctx) for r in results]
        out.append(results)
    return out


def _best_items(snap: Snapshot, queries: np.ndarray, want: int, allowed: np.ndarray | None
                ) -> list[list[tuple[int, float, dict[str, Any] | None]]]:
    """Per query, the `want` best items as (best row, cosine, its record when read), ties
    by id: the index's best rows, one per item (an item's rows, e.g. video moments, count
    by their best); asked for more when items repeat, as the planner's candidate search
    does. Without a filter, the rows asked for are the page: their records are read once,
    ids included."""
    eligible = len(snap) if allowed is None else len(allowed)
    # a filter restricts the index search to its rows, where the tuned depth (measured
    # unfiltered) holds less well: ask for the planner's pool then, as before
    fetch = min(eligible, want if allowed is None else max(want, POOL))
    out: list[list[tuple[int, float, dict[str, Any] | None]]] = [[] for _ in queries]
    todo = np.arange(len(queries))
    while len(todo):
        scores, rows = snap.index.search(queries[todo], fetch, allowed)
        found = [(r[r >= 0].tolist(), s[r >= 0].tolist()) for s, r in zip(scores, rows,
                                                                          strict=True)]
        unique = sorted({row for r, _ in found for row in r})
        whole = fetch == want
        cells = snap.cells.rows(unique, _columns(snap) if whole else ["id"])
        read = dict(zip(unique, cells, strict=True))
        again = []
        for qi, (r, s) in zip(todo.tolist(), found, strict=True):
            hits = sorted(zip(r, s, strict=True), key=lambda rs: (-rs[1], str(read[rs[0]]["id"])))
            seen: set[Any] = set()
            best = [(row, cos, read[row] if whole else None) for row, cos in hits
                    if read[row]["id"] not in seen and not seen.add(read[row]["id"])]
            out[qi] = best[:want]
            if len(best) < want and len(r) == fetch < eligible:
                again.append(qi)
        todo, fetch = np.array(again, dtype=np.int64), min(eligible, fetch * 4)
    return out


@functools.cache
def _template() -> SearchRequest:
    """A request of default options, copied per query with the plain options set (checked
    as `SearchRequest` would check them by `from_options`; `model_construct` and
    validation cost tens of microseconds, a copy a few)."""
    return SearchRequest.model_construct(negative=[], weights={})


def _unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (as the planner scales a query vector), float32."""
    v = np.asarray(v, dtype=np.float32)
    return np.ascontiguousarray(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True),
                                               1e-12), dtype=np.float32)


def _columns(snap: Snapshot) -> list[str]:
    """The columns a `Result` reads (`to_result`: not the hidden ones, nor `channel`)."""
    names = snap.memo.get("lean_columns")
    if names is None:
        names = snap.memo["lean_columns"] = [
            n for n in snap.table.column_names if n not in HIDDEN_COLUMNS and n != "channel"]
    return names


def _simple(snap: Snapshot, env: Any) -> Stats | None:
    """The (image, visual) calibration when every row of the snapshot is in the "visual"
    channel and the channels are the built-in ones, else None (decided once per snapshot,
    on the column arrays: no per-row Python, as a first search after opening pays it)."""
    memo = snap.memo.get("lean")
    if memo is None:
        stats = None
        builtin = all(type(c).__module__ in BUILTIN for c in channels())
        if len(snap) and builtin and visual_only(snap.table):
            stored = Calibration.from_json(env.manifest().get("calibration"))
            stats = stored.stats.get(("image", "visual"))
            if stats is None:  # not measured at write time: the collection measures it
                probe = Query([Part("image", np.ones(1, np.float32), 1.0, "vector")])
                stats = env.calibration(snap, probe).get("image", "visual")[0]
        memo = snap.memo["lean"] = (stats,)
    return memo[0]


def visual_only(table: pa.Table) -> bool:
    """Whether every row's channel is "visual" (as `groups.row_channels` reads it: a null
    channel is "text" for text rows, else "visual")."""
    names = table.column_names
    modality = table.column("modality") if "modality" in names else None
    if "channel" not in names:
        return modality is None or "text" not in pc.unique(modality).to_pylist()
    channel = table.column("channel")
    if set(pc.unique(channel).to_pylist()) - {None, "visual"}:
        return False
    if channel.null_count and modality is not None:
        return "text" not in pc.unique(pc.filter(modality, pc.is_null(channel))).to_pylist()
    return True
