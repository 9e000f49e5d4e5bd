"""One search: a `SearchRequest` run against a store snapshot.

`Search(snap, request, env).run()` embeds the query parts, applies the filters, asks the
optional channels (`mmsearch.channels`) for query parts and row bonuses, runs the planner
(`plan.execute`) and turns the hits into `Result`s. `SearchEnv` is what a search needs from
its collection: the encoder, calibration, rerankers and the manifest, loaded lazily.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch import limits
from mmsearch.channels import QueryContext, channels
from mmsearch.encoders.base import Encoder
from mmsearch.encoders.media import embed_image
from mmsearch.errors import ModelMismatchError, UsageError
from mmsearch.filters import compile_filters
from mmsearch.planner import hubness, lean
from mmsearch.planner.calibration import Calibration
from mmsearch.planner.plan import execute
from mmsearch.planner.query import Part, Query, SortKey, split_negatives
from mmsearch.planner.rerank_step import rerank_hits
from mmsearch.request import SearchRequest
from mmsearch.rerank.base import Reranker
from mmsearch.results import Result
from mmsearch.view.snapshot import CORE_COLUMNS, HIDDEN_COLUMNS, Snapshot


@dataclass(frozen=True)
class SearchEnv:
    """What a search needs from its collection (callables: loaded on first use)."""

    path: Path                                              # the store folder
    encoder: Callable[[], Encoder]
    calibration: Callable[[Snapshot, Query], Calibration]
    reranker: Callable[[str | None], Reranker | None]
    manifest: Callable[[], dict[str, Any]]                  # the newest manifest seen
    device: str | None = None
    #: texts -> embeddings (the collection's: shares `search_batch`'s encoder batch)
    embed_texts: Callable[[list[str]], np.ndarray] | None = None


class Search:
    """A request over one snapshot; `run()` returns the page of results."""

    def __init__(self, snap: Snapshot, request: SearchRequest, env: SearchEnv) -> None:
        self.snap = snap
        self.request = request
        self.env = env

    def run(self) -> list[Result]:
        """The results, best first (or in `sort` order)."""
        req, snap = self.request, self.snap
        plain = lean.from_request(req)
        if plain is not None:  # a vector alone: one index call
            found = lean.search(snap, plain, self.env)
            if found is not None:
                return found[0]
        query, ctx = self.parse()
        if req.rerank and not ctx.texts:
            raise UsageError("reranking needs a text query")
        if len(snap) == 0:
            return []
        bonus = self.bonus(ctx)
        if query is None:
            return self._bonus_only(bonus)
        rerank_fn = None
        model = self.env.reranker(req.reranker) if req.rerank else None
        if model is not None:  # None: no reranker reachable (said once in the log)
            rerank_fn = functools.partial(rerank_hits, n=req.rerank, text=" ".join(ctx.texts),
                                          reranker=model, snap=snap)
        hits = execute(snap, query, self.env.calibration(snap, query), ctx.allowed, rerank_fn,
                       req.rerank, bonus)
        records = snap.records(np.array([h.row for h in hits], dtype=np.int64))
        results = [to_result(h.score, rec, h.explain if req.explain else None, h.similarity)
                   for h, rec in zip(hits, records, strict=True)]
        for channel in channels():
            if channel.annotates(ctx):
                results = [channel.annotate(r, ctx) for r in results]
        return results

    def allowed_rows(self) -> np.ndarray | None:
        """Row positions passing `where`, `filters` and `modality` (None: every row)."""
        req = self.request
        if not req.where and (req.filters or req.modality) and len(self.snap):
            # structured filters alone: evaluated on the column arrays, cached per snapshot
            if req.filters:
                compile_filters(req.filters)  # validates values and limits
            clauses = list((req.filters or {}).items())
            if req.modality:
                clauses.append(("modality", {"in": list(req.modality)}))
            rows = self.snap.filter_rows(clauses)
            if rows is not None:
                return rows
        cond, params = req.condition()
        return None if cond is None or not len(self.snap) else self.snap.matching_rows(
            cond, params)

    def parse(self) -> tuple[Query | None, QueryContext]:
        """Embed the query parts; returns the planner's query and the channels' context.

        The optional channels add parts of their own (an example sound's tags and words).
        None for the query: nothing to embed, the channels' row bonuses answer alone (a
        sound on a store whose only audio channel is CLAP).
        """
        req = self.request
        terms, negatives = [], list(req.negative)
        given = req.terms()
        limits.check("max_query_parts", len(given) + len(negatives), "query texts")
        for term, _ in given:
            limits.check("max_text_chars", len(term), "characters in a query text")
        for term, weight in given:
            rest, minus = split_negatives(term)
            negatives += minus
            if rest:
                terms.append((rest, weight))
        for n in negatives:
            limits.check("max_text_chars", len(n), "characters in a negative text")
        negatives = [n.strip() for n in negatives if n and n.strip()]
        limits.check("max_query_parts", len(terms) + len(negatives) + (req.image is not None)
                     + (req.vector is not None) + (req.audio is not None),
                     "query parts (texts, negatives, image, vector)")
        texts = [t for t, _ in terms]
        embed = self.env.embed_texts or (lambda t: self.env.encoder().encode_texts(t))
        embedded = embed(texts + negatives) if texts or negatives else []
        positives = [Part("text", embedded[i], w, f"text:{t}") for i, (t, w) in
                     enumerate(terms)]
        if req.image is not None:
            positives.append(Part("image", embed_image(self.env.encoder(), req.image)[0],
                                  1.0, "image"))
        if req.vector is not None:
            v = req.vector
            dim = self.env.manifest().get("dim")
            if dim and int(dim) != v.shape[0]:
                raise ModelMismatchError(f"store {self.env.path} holds {dim}-d vectors; "
                                         f"this model makes {v.shape[0]}-d vectors")
            positives.append(Part("image", v / max(float(np.linalg.norm(v)), 1e-12), 1.0,
                                  "vector"))
        ctx = QueryContext(self.snap, req, texts, self.allowed_rows(), self.env.encoder,
                           self.env.manifest(), self.env.path, self.env.device, positives)
        for channel in channels():
            positives += channel.query_parts(ctx)
        if not positives and req.audio is not None:
            return None, ctx
        parts_neg = [Part("text", embedded[len(texts) + i], 1.0, f"not:{n}")
                     for i, n in enumerate(negatives)]
        return Query(positives, parts_neg, k=req.k, offset=req.offset,
                     min_score=req.min_score,
                     sort=SortKey.parse(req.sort) if req.sort else None, fusion=req.fusion,
                     weights=dict(req.weights), explain=req.explain,
                     hub=hubness.spec_of(self.env.manifest())), ctx

    @staticmethod
    def bonus(ctx: QueryContext) -> dict[int, float]:
        """The channels' row bonuses, summed per row."""
        total: dict[int, float] = {}
        for channel in channels():
            for row, value in channel.row_bonus(ctx).items():
                total[row] = total.get(row, 0.0) + value
        return total

    def _bonus_only(self, bonus: dict[int, float]) -> list[Result]:
        """Rows ranked by the channels' bonuses alone (score: the bonus)."""
        req = self.request
        ranked = sorted(bonus.items(), key=lambda rz: -rz[1])[req.offset:req.offset + req.k]
        records = self.snap.records(np.array([r for r, _ in ranked], dtype=np.int64))
        return [to_result(z, rec) for (_, z), rec in zip(ranked, records, strict=True)]


def to_result(score: float, record: dict[str, Any], explain: dict[str, Any] | None = None,
              similarity: float | None = None) -> Result:
    """A store row as a `Result` (hidden columns dropped, the rest as metadata)."""
    meta = {k: v for k, v in record.items() if k not in HIDDEN_COLUMNS and k not in CORE_COLUMNS}
    return Result(id=str(record["id"]), path=record.get("path"),
                  modality=record.get("modality") or "image", score=score,
                  start_s=record.get("start_s"), end_s=record.get("end_s"), metadata=meta,
                  explain=explain, similarity=similarity)
