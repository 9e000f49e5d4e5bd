"""Search results: the same fields as the CLI's JSON lines."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pyarrow as pa


@dataclass
class Result:
    """One hit. `score` is higher-is-better; moments carry `start_s`/`end_s`.

    `score` is calibrated (z scale: ~0 for an unrelated item, 3+ a clear match; see the
    README); `similarity` is the raw cosine of the returned row with the query.
    """

    id: str
    path: str | None
    modality: str
    score: float
    start_s: float | None = None
    end_s: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: raw cosine of the returned row with the query (positives' unit vectors summed)
    similarity: float | None = None
    #: with `explain=True`: which channels and query parts contributed how much
    explain: dict[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["metadata"][name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: core fields, then metadata (None values dropped)."""
        out: dict[str, Any] = {"id": self.id, "path": self.path, "modality": self.modality,
                               "score": float(self.score)}
        if self.similarity is not None:
            out["similarity"] = float(self.similarity)
        if self.start_s is not None:
            out["start_s"] = self.start_s
            out["end_s"] = self.end_s
        for key, value in self.metadata.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            out[key] = value.isoformat() if isinstance(value, datetime | date) else value
        if self.explain is not None:
            out["explain"] = self.explain
        return out


def results_to_arrow(results: list[Result]) -> pa.Table:
    """Results as an Arrow table: id, path, modality, score, start_s, end_s, then metadata
    columns (the union over the results; missing values null)."""
    core = ["id", "path", "modality", "score", "start_s", "end_s"]
    meta: dict[str, None] = {}
    for r in results:
        meta.update(dict.fromkeys(k for k in r.metadata if k not in core))
    rows = [{"id": r.id, "path": r.path, "modality": r.modality, "score": float(r.score),
             "start_s": r.start_s, "end_s": r.end_s, **{k: r.metadata.get(k) for k in meta}}
            for r in results]
    if not rows:
        return pa.table({"id": pa.array([], pa.string()), "path": pa.array([], pa.string()),
                         "modality": pa.array([], pa.string()),
                         "score": pa.array([], pa.float64()),
                         "start_s": pa.array([], pa.float64()),
                         "end_s": pa.array([], pa.float64())})
    table = pa.Table.from_pylist(rows)
    for name in ("start_s", "end_s"):  # all-null columns come back typed
        if pa.types.is_null(table.schema.field(name).type):
            table = table.set_column(table.column_names.index(name), name,
                                     table.column(name).cast(pa.float64()))
    return table


def batch_table(pages: list[list[Result]]) -> pa.Table:
    """A batch's result lists as one Arrow table: `query` (the query's position), then
    `results_to_arrow`'s columns with `similarity` after `score`."""
    flat = [r for hits in pages for r in hits]
    table = results_to_arrow(flat)
    table = table.add_column(0, "query", pa.array(
        [qi for qi, hits in enumerate(pages) for _ in hits], pa.int32()))
    return table.add_column(table.column_names.index("score") + 1, "similarity", pa.array(
        [r.similarity for r in flat], pa.float64()))


def results_to_pandas(results: list[Result]) -> Any:
    """Results as a pandas DataFrame (needs pandas), columns as in `results_to_arrow`."""
    return results_to_arrow(results).to_pandas()
