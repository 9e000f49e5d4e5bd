"""The lean query path: plain vector queries answered by one index call, no planner.

A query is plain when it is one vector (or a batch of them) with at most `k`, `offset`,
`filters` and `modality`: no text, image, sound, negatives, sort, rerank, min_score,
explain, channel weights or rrf. On a snapshot of one row per item, all in the "visual"
channel, the planner's answer to it is the index's k + offset best rows by cosine (ties by
id) on the calibrated z scale of (image, visual). So `search` asks the index for exactly
those rows (for a batch: one call on the query matrix), scores them and builds `Result`s
for the page only. Anything else returns None and the caller runs the planner; tests
compare both on the same queries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmsearch.channels import QueryContext, channels
from mmsearch.channels.base import BUILTIN, Channel
from mmsearch.planner.calibration import Stats
from mmsearch.planner.groups import layout
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
    return Plain(_unit(v[None, :]), _template().model_copy(
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
    or the channels need the planner (several rows per item, several channels, a channel
    that is not built in), or the dimension does not fit (the planner says so)."""
    stats = _simple(snap, env)
    if stats is None or plain.vectors.shape[1] != snap.vectors.dim:
        return None
    req = plain.request
    from mmsearch.planner.search import Search, to_result

    allowed = Search(snap, req, env).allowed_rows()
    nq, want = len(plain.vectors), req.k + req.offset
    if allowed is not None and not len(allowed):
        return [[] for _ in range(nq)]
    # a filter restricts the index search to its rows, where the tuned depth (measured
    # unfiltered) holds less well: ask for the planner's pool then, as before
    fetch = want if allowed is None else max(want, POOL)
    scores, rows = snap.index.search(plain.vectors, fetch, allowed)
    page: list[list[tuple[int, float]]] = []
    for s, r in zip(scores, rows, strict=True):
        found = r >= 0
        page.append(list(zip(r[found].tolist(), s[found].tolist(), strict=True)))
    picked = []
    for hits in page:  # ties by id, as the planner orders them
        if len({c for _, c in hits}) < len(hits):
            ids = _ids(snap, [row for row, _ in hits])
            hits.sort(key=lambda rs: (-rs[1], ids[rs[0]]))
        picked.append(hits[req.offset:req.offset + req.k])
    records = iter(snap.cells.rows([row for hits in picked for row, _ in hits],
                                   _columns(snap)))
    ctx = QueryContext(snap, req, [], allowed, env.encoder, {}, env.path, env.device)
    annotate = [c.annotate for c in channels()
                if type(c).annotate is not Channel.annotate]
    out = []
    for hits in picked:
        cos = np.array([c for _, c in hits], dtype=np.float32)
        z = stats.z(cos).tolist()
        results = [to_result(zi, next(records), None, c) for zi, (_, c) in
                   zip(z, hits, strict=True)]
        for hook in annotate:
            results = [hook(r, ctx) for r in results]
        out.append(results)
    return out


_TEMPLATE: list[SearchRequest] = []


def _template() -> SearchRequest:
    """A request of default options, copied per query with the plain options set (checked
    as `SearchRequest` would check them by `from_options`; `model_construct` and
    validation cost tens of microseconds, a copy a few)."""
    if not _TEMPLATE:
        _TEMPLATE.append(SearchRequest.model_construct(negative=[], weights={}))
    return _TEMPLATE[0]


def _unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (as the planner scales a query vector), float32."""
    v = np.asarray(v, dtype=np.float32)
    return np.ascontiguousarray(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True),
                                               1e-12), dtype=np.float32)


def _ids(snap: Snapshot, rows: list[int]) -> dict[int, str]:
    unique = sorted(set(rows))
    return dict(zip(unique, (str(r["id"]) for r in snap.cells.rows(unique, ["id"])),
                    strict=True))


def _columns(snap: Snapshot) -> list[str]:
    """The columns a `Result` reads (`to_result`: not the hidden ones, nor `channel`)."""
    names = snap.memo.get("lean_columns")
    if names is None:
        names = snap.memo["lean_columns"] = [
            n for n in snap.table.column_names if n not in HIDDEN_COLUMNS and n != "channel"]
    return names


def _simple(snap: Snapshot, env: Any) -> Stats | None:
    """The (image, visual) calibration when the snapshot suits the lean path, else None
    (decided once per snapshot)."""
    memo = snap.memo.get("lean")
    if memo is None:
        stats = None
        lay = layout(snap) if len(snap) else None
        builtin = all(type(c).__module__ in BUILTIN for c in channels())
        if lay is not None and builtin and lay.names == ["visual"] \
                and len(lay.starts) - 1 == len(snap):
            probe = Query([Part("image", np.ones(1, np.float32), 1.0, "vector")])
            stats = env.calibration(snap, probe).get("image", "visual")[0]
        memo = snap.memo["lean"] = (stats,)
    return memo[0]
