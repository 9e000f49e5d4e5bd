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
import gc
import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmsearch.channels import QueryContext, channels
from mmsearch.channels.base import BUILTIN, Channel
from mmsearch.planner.calibration import Calibration, Stats
from mmsearch.planner.plan import POOL
from mmsearch.planner.query import Part, Query
from mmsearch.request import MAX_FILTERS, MAX_K, MAX_OFFSET, MAX_VECTOR_DIM, SearchRequest, _vector
from mmsearch.results import Result
from mmsearch.store.schema import CORE_COLUMNS
from mmsearch.view.cells import Cells, python_values
from mmsearch.view.snapshot import HIDDEN_COLUMNS, Snapshot

#: Keyword options a plain search may have.
PLAIN_OPTIONS = frozenset({"vector", "k", "offset", "filters"})


class Plain:
    """A plain vector search: unit query vectors (one row each), the page, the filters, and
    its `SearchRequest` (made on first use: a copy costs more than the rest of the check)."""

    __slots__ = ("_request", "_vector", "filters", "k", "modality", "offset", "vectors")

    def __init__(self, vectors: np.ndarray, k: int, offset: int,
                 filters: dict[str, Any] | None, request: SearchRequest | None = None,
                 vector: np.ndarray | None = None) -> None:
        self.vectors, self.k, self.offset, self.filters = vectors, k, offset, filters
        self.modality = None if request is None else request.modality
        self._request, self._vector = request, vector

    @property
    def request(self) -> SearchRequest:
        """The request's options (an unvalidated copy of the defaults, checked as
        `SearchRequest` checks them by `from_options`)."""
        if self._request is None:
            self._request = _template().model_copy(update={
                "vector": self._vector, "k": self.k, "offset": self.offset,
                "filters": self.filters})
        return self._request


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
    v = options["vector"]
    ss = float(v @ v) if type(v) is np.ndarray and v.dtype == np.float32 and v.ndim == 1 \
        and 0 < v.size <= MAX_VECTOR_DIM else math.nan
    if not 0.0 < ss < math.inf:  # any other input, or a doubtful one: checked in full
        try:
            v = _vector(v)
        except ValueError:
            return None
        ss = float(v @ v)
    unit = (v / max(math.sqrt(ss), 1e-12)).astype(np.float32, copy=False)
    return Plain(unit[None, :], k, offset, filters, vector=v)


def from_request(req: SearchRequest) -> Plain | None:
    """The plain search a validated request asks for, or None."""
    if (req.vector is None or req.text is not None or req.image is not None
            or req.audio is not None or req.negative or req.where or req.sort
            or req.rerank or req.min_score is not None or req.explain or req.weights
            or req.fusion != "sum"):
        return None
    return Plain(_unit(req.vector[None, :]), req.k, req.offset, req.filters, req)


def batch(vectors: np.ndarray, options: Mapping[str, Any]) -> Plain | None:
    """A plain search of many query vectors sharing `options`, or None."""
    if isinstance(vectors, np.ndarray) and vectors.ndim == 2 and vectors.dtype.kind == "f" \
            and 0 < vectors.shape[1] <= MAX_VECTOR_DIM:  # checked at once (as `_vector`)
        m = np.asarray(vectors, dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            ss = np.einsum("ij,ij->i", m, m)
        if not (np.isfinite(ss) & (ss > 0)).all():
            return None
        one = from_options({**options, "vector": m[0]})
        return None if one is None else Plain(_unit(m), one.k, one.offset, one.filters,
                                              vector=m[0])
    try:
        rows = [_vector(v) for v in vectors]
    except ValueError:
        return None
    if len({len(r) for r in rows}) != 1:
        return None
    one = from_options({**options, "vector": rows[0]})
    return None if one is None else Plain(_unit(np.stack(rows)), one.k, one.offset,
                                          one.filters, vector=rows[0])


def search(snap: Snapshot, plain: Plain, env: Any) -> list[list[Result]] | None:
    """One result page per query vector, as the planner gives it; None when the snapshot
    or the channels need the planner (rows in several channels, a channel that is not
    built in), or the dimension does not fit (the planner says so)."""
    prep = _prepared(snap, env)
    if prep is None or plain.vectors.shape[1] != snap.vectors.dim:
        return None
    allowed = _allowed(snap, plain, env)
    if allowed is not None and not len(allowed):
        return [[] for _ in range(len(plain.vectors))]
    if len(plain.vectors) == 1:  # lists: cheaper than array operations for one query
        out = [_page(snap, prep, plain.vectors, plain.k + plain.offset, allowed,
                     plain.offset)]
    else:
        rows, cosines, sizes, ids = _page_arrays(snap, plain, allowed)
        names = [n for n in prep.names if n != "id" or ids is None]  # (ids: read already)
        values = dict(zip(names, _read(snap, rows, names), strict=True))
        if ids is not None:
            values["id"] = python_values(ids)
        flat = prep.results(values, cosines)
        ends = np.cumsum(sizes).tolist()
        out = [flat[lo:hi] for lo, hi in zip([0, *ends[:-1]], ends, strict=True)]
    if prep.annotate and _hooks(snap, plain, prep, env):
        ctx = QueryContext(snap, plain.request, [], allowed, env.encoder, {}, env.path,
                           env.device)
        for channel in _hooks(snap, plain, prep, env):
            out = [[channel.annotate(r, ctx) for r in results] for results in out]
    return out


def search_table(snap: Snapshot, plain: Plain, env: Any) -> pa.Table | None:
    """The pages of `search` as one Arrow table (`results.batch_table`'s columns), its
    columns taken from the store's columns by Arrow (no `Result`s, no Python values but
    the ids, read to check that each page's items are distinct); None where `search` is
    None or a channel's result hook may change the results."""
    prep = _prepared(snap, env)
    if prep is None or plain.vectors.shape[1] != snap.vectors.dim \
            or (prep.annotate and _hooks(snap, plain, prep, env)):
        return None
    allowed = _allowed(snap, plain, env)
    rows, cos, sizes, ids = _page_arrays(snap, plain, allowed)
    take = snap.cells.take(rows, [n for n in prep.names if n != "id" or ids is None])
    take.setdefault("id", ids)
    path, modality, start, end = (take[n] if n is not None else pa.nulls(len(rows), t)
                                  for n, t in zip(prep.core, (pa.string(), pa.string(),
                                                              pa.float64(), pa.float64()),
                                                  strict=True))
    columns = {
        "query": np.repeat(np.arange(len(plain.vectors), dtype=np.int32), sizes),
        "id": take["id"], "path": path, "modality": pc.fill_null(modality, "image"),
        "score": (cos - prep.stats.mean) / prep.stats.std, "similarity": cos,
        "start_s": start, "end_s": end, **{n: take[n] for n in prep.meta}}
    return pa.table(columns)


def _page_arrays(snap: Snapshot, plain: Plain, allowed: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array | None]:
    """The pages of `_page` as arrays: all pages' rows and cosines, one after the other,
    each page's size, and the rows' ids when they were read on the way (else None);
    checked on arrays (items distinct by codes of their ids, no ties), the other queries
    going the general way (`_best_items`)."""
    nq, want, offset = len(plain.vectors), plain.k + plain.offset, plain.offset
    eligible = len(snap) if allowed is None else len(allowed)
    if not eligible:
        return np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(nq, np.int64), None
    fetch = min(eligible, want if allowed is None else max(want, POOL))
    scores, found = snap.index.search(plain.vectors, fetch, allowed)
    top = min(want, eligible)
    edge = min(top + 1, fetch)
    head = found[:, :top]
    near = scores[:, :edge]
    ok = (head[:, -1] >= 0) & (near[:, 1:] != near[:, :-1]).all(axis=1)
    ids = snap.cells.take(np.maximum(head, 0), ["id"])["id"]
    codes = pc.dictionary_encode(ids).indices.to_numpy(zero_copy_only=False)
    codes = np.sort(codes.reshape(nq, top), axis=1)
    ok &= (codes[:, 1:] != codes[:, :-1]).all(axis=1)
    rows, cos = head[:, offset:], scores[:, offset:top].astype(np.float64)
    if ok.all():
        return (rows.reshape(-1), cos.reshape(-1), np.full(nq, max(top - offset, 0), np.int64),
                ids if offset == 0 else None)
    again = np.flatnonzero(~ok)
    redone = dict(zip(again.tolist(), _best_items(snap, plain.vectors[again], want, allowed),
                      strict=True))
    pages = [(rows[qi], cos[qi]) if qi not in redone else
             (np.array([r for r, _ in redone[qi][offset:]], np.int64),
              np.array([c for _, c in redone[qi][offset:]], np.float64)) for qi in range(nq)]
    return (np.concatenate([r for r, _ in pages]), np.concatenate([c for _, c in pages]),
            np.array([len(r) for r, _ in pages], np.int64), None)


def _allowed(snap: Snapshot, plain: Plain, env: Any) -> np.ndarray | None:
    """The rows a plain search's filters and modality allow (None: all)."""
    if not (plain.filters or plain.modality):
        return None
    from mmsearch.planner.search import Search

    return Search(snap, plain.request, env).allowed_rows()


def _hooks(snap: Snapshot, plain: Plain, prep: _Prepared, env: Any) -> list[Channel]:
    """The channels whose result hook may change this snapshot's plain results (asked
    once per snapshot: plain searches have no texts and no explain, and the built-in
    channels' answer does not depend on the filters)."""
    if prep.hooks is None:
        ctx = QueryContext(snap, plain.request, [], None, env.encoder, {}, env.path,
                           env.device)
        prep.hooks = [c for c in prep.annotate if c.annotates(ctx)]
    return prep.hooks


#: Above this many rows (a batch's pages), cells are read a column and chunk at a time.
BULK_ROWS = 64


def _read(snap: Snapshot, rows: list[int] | np.ndarray, names: list[str]) -> list[list[Any]]:
    """Each named column's values at the row positions (cell by cell for a few rows)."""
    if len(rows) > BULK_ROWS:
        return snap.cells.columns(np.asarray(rows, dtype=np.int64), names)
    return snap.cells.values(rows, names)


class _Prepared:
    """What `search` derives once per snapshot: the calibration, the columns a `Result`
    reads (`search.to_result`: not the hidden ones, nor `channel`) and the channels'
    result hooks."""

    def __init__(self, stats: Stats, columns: list[str], annotate: list[Channel],
                 string_ids: bool = False) -> None:
        self.stats, self.annotate = stats, annotate
        #: whether the id column holds strings (read as `str` already: no `str()` each)
        self.string_ids = string_ids
        #: the channels whose `annotate` may change a plain search's results here (asked
        #: once: their answer depends on the snapshot and on texts and explain, which plain
        #: searches do not have); None until the first search asks
        self.hooks: list[Channel] | None = None
        self.core = [n if n in columns else None for n in ("path", "modality", "start_s",
                                                            "end_s")]
        self.meta = [n for n in columns if n not in CORE_COLUMNS]
        #: the columns read per result row
        self.names = ["id", *(n for n in self.core if n is not None), *self.meta]
        #: one row's metadata dict from its values of `meta`, by a dict display (a third
        #: of `dict(zip(...))`'s cost; generated as dataclasses generate their `__init__`)
        args = ", ".join(f"v{i}" for i in range(len(self.meta)))  # (code: repr()s of names)
        items = ", ".join(f"{n!r}: v{i}" for i, n in enumerate(self.meta))
        self.metadata = eval(f"lambda {args}: {{{items}}}")
        self._makers: list[Callable[..., Result]] | bool | None = False  # (False: not made)

    def makers(self, cells: Cells) -> list[Callable[..., Result]] | None:
        """Per chunk of the snapshot's table, a generated function making the `Result` of
        a row from (its row within the chunk, its cosine), as `results` makes it (made on
        first use; None when the columns are not chunked alike)."""
        if self._makers is False:
            self._makers = cells.row_functions(
                self.names, self._result_source, "i, c",
                {"Result": Result, "mean": self.stats.mean, "std": self.stats.std})
        return self._makers  # type: ignore[return-value]

    def _result_source(self, cells: list[str]) -> str:
        """A row's `Result` as an expression of its cells' expressions (see `results`)."""
        by = dict(zip(self.names, cells, strict=True))
        path, modality, start, end = (by[n] if n is not None else "None" for n in self.core)
        ident = by["id"] if self.string_ids else f"str({by['id']})"
        meta = ", ".join(f"{n!r}: {by[n]}" for n in self.meta)  # (code: repr()s of names)
        return (f"Result({ident}, {path}, {modality} or 'image', (c - mean) / std, {start}, "
                f"{end}, {{{meta}}}, c)")

    def results(self, values: dict[str, list[Any]], cos: list[float] | np.ndarray
                ) -> list[Result]:
        """`Result`s of rows from their values of `names` and their cosines (a list, or
        an array for many rows), as `search.to_result` builds them, a column at a time
        (the dataclass called positionally)."""
        nothing = [None] * len(cos)
        path, modality, start, end = (values[n] if n is not None else nothing
                                      for n in self.core)
        mean, std = self.stats.mean, self.stats.std
        if isinstance(cos, np.ndarray):
            z, cos = ((cos - mean) / std).tolist(), cos.tolist()
        else:
            z = [(c - mean) / std for c in cos]  # as `Stats.z`
        # Many new objects (a batch's results and their metadata dicts, none in a cycle)
        # set off the cyclic garbage collector every 700, which then walks all the objects
        # alive: paused while they are made, it halves the cost of a batch's results.
        pause = len(cos) > BULK_ROWS and gc.isenabled()
        if pause:
            gc.disable()
        try:
            metas = (list(map(self.metadata, *(values[n] for n in self.meta))) if self.meta
                     else [{} for _ in cos])
            ids = values["id"] if self.string_ids else map(str, values["id"])
            return list(map(Result, ids, path,
                            [m or "image" for m in modality], z, start, end, metas, cos))
        finally:
            if pause:
                gc.enable()


def _page(snap: Snapshot, prep: _Prepared, query: np.ndarray, want: int,
          allowed: np.ndarray | None, offset: int) -> list[Result]:
    """One query's page: the `want` best items' `Result`s from `offset`.

    The index's best rows are the page when they are distinct items without tied scores
    (the usual case: checked on the index's answer); else it goes the general way
    (`_best_items`)."""
    eligible = len(snap) if allowed is None else len(allowed)
    # a filter restricts the index search to its rows, where the tuned depth (measured
    # unfiltered) holds less well: ask for the planner's pool then, as before
    fetch = min(eligible, want if allowed is None else max(want, POOL))
    scores, found = snap.index.search(query, fetch, allowed)
    top = min(want, eligible)
    edge = min(top + 1, fetch)  # ties are ordered by id (the general way), also at the end
    head, near = found[0, :top].tolist(), scores[0, :edge].tolist()
    if head[-1] >= 0 and all(a != b for a, b in itertools.pairwise(near)):
        results = _results(snap, prep, head, near[:top])
        if len({r.id for r in results}) == top:
            return results[offset:]
    hits = _best_items(snap, query, want, allowed)[0][offset:]
    return _results(snap, prep, [row for row, _ in hits], [c for _, c in hits])


def _results(snap: Snapshot, prep: _Prepared, rows: list[int], cos: list[float]
             ) -> list[Result]:
    """The `Result`s of a few rows: a generated function call a row where the columns
    allow (`_Prepared.makers`), else read a column at a time."""
    makers = prep.makers(snap.cells)
    if makers is None:
        return prep.results(dict(zip(prep.names, _read(snap, rows, prep.names), strict=True)),
                            cos)
    chunks, local = snap.cells.locate(rows, "id")
    return [makers[ch](i, c) for ch, i, c in zip(chunks, local, cos, strict=True)]


def _best_items(snap: Snapshot, queries: np.ndarray, want: int, allowed: np.ndarray | None
                ) -> list[list[tuple[int, float]]]:
    """Per query, the `want` best items as (best row, cosine), ties by id: the index's
    best rows, one per item (an item's rows, e.g. video moments, count by their best);
    asked for more when items repeat, as the planner's candidate search does."""
    eligible = len(snap) if allowed is None else len(allowed)
    fetch = min(eligible, want if allowed is None else max(want, POOL))
    out: list[list[tuple[int, float]]] = [[] for _ in queries]
    todo = np.arange(len(queries))
    while len(todo):
        scores, rows = snap.index.search(queries[todo], fetch, allowed)
        found = [(r[r >= 0].tolist(), s[r >= 0].tolist()) for s, r in zip(scores, rows,
                                                                          strict=True)]
        unique = sorted({row for r, _ in found for row in r})
        read = dict(zip(unique, _read(snap, unique, ["id"])[0], strict=True))
        again = []
        for qi, (r, s) in zip(todo.tolist(), found, strict=True):
            hits = sorted(zip(r, s, strict=True), key=lambda rs: (-rs[1], str(read[rs[0]])))
            seen: set[Any] = set()
            best = [(row, cos) for row, cos in hits
                    if read[row] not in seen and not seen.add(read[row])]
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


def _prepared(snap: Snapshot, env: Any) -> _Prepared | None:
    """The (image, visual) calibration, the result columns and hooks when every row of the
    snapshot is in the "visual" channel and the channels are the built-in ones, else None
    (decided once per snapshot, on the column arrays: no per-row Python, as a first search
    after opening pays it)."""
    memo = snap.memo.get("lean")
    if memo is None:
        prep = None
        builtin = all(type(c).__module__ in BUILTIN for c in channels())
        if len(snap) and builtin and visual_only(snap.table):
            stored = Calibration.from_json(env.manifest().get("calibration"))
            stats = stored.stats.get(("image", "visual"))
            if stats is None:  # not measured at write time: the collection measures it
                probe = Query([Part("image", np.ones(1, np.float32), 1.0, "vector")])
                stats = env.calibration(snap, probe).get("image", "visual")[0]
            # the columns `to_result` reads: not the hidden ones, nor `channel`
            columns = [n for n in snap.table.column_names
                       if n not in HIDDEN_COLUMNS and n != "channel"]
            annotate = [c for c in channels() if type(c).annotate is not Channel.annotate]
            prep = _Prepared(stats, columns, annotate,
                             pa.types.is_string(snap.table.schema.field("id").type)
                             and not snap.table.column("id").null_count)
        memo = snap.memo["lean"] = (prep,)
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
