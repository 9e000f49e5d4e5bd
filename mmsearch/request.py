"""The one query object: every search option, stated and validated once.

`SearchRequest` is what `Collection.search` runs. The library builds it from keyword
arguments (`col.search(text="red shoe", k=5)`) or takes it whole (`col.search(request)`);
the CLI builds it from its flags; the HTTP service takes `SearchOptions` (everything but
the trusted-only `where` and file paths) as its JSON body. `to_dict()` / `from_dict()` turn
a request into plain JSON-ready data and back, so a query can be logged and replayed.

Field limits are the module constants below (`MAX_K`, ...); the HTTP service may ask for
tighter ones (its `Limits`).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from mmsearch.errors import UsageError
from mmsearch.filters import condition
from mmsearch.planner.query import SortKey, parse_weights, split_negatives

#: Largest `k` (results per page).
MAX_K = 10_000
#: Largest `offset` (results skipped).
MAX_OFFSET = 100_000
#: Longest `where` condition, in characters. (How many texts and how long each may be are
#: tunable limits, checked when the query is embedded: `mmsearch.limits`.)
MAX_WHERE_CHARS = 10_000
#: Longest query vector.
MAX_VECTOR_DIM = 8_192
#: Most hits a reranker may rescore.
MAX_RERANK = 1_000
#: Hits rescored by `rerank=True`.
DEFAULT_RERANK = 20
#: Largest text or channel weight.
MAX_WEIGHT = 1_000.0
#: Most channel weights, and most filter columns, in one request.
MAX_CHANNELS = 64
MAX_FILTERS = 64
#: Longest sort spec and reranker spec, in characters.
MAX_SPEC_CHARS = 512
#: Kinds of items (`modality`).
MODALITIES = ("image", "video", "audio", "text")

_DEFAULTS: dict[type, dict[str, Any]] = {}

Modality = Literal["image", "video", "audio", "text"]


class TextTerm(BaseModel):
    """One text of a query and its weight (several texts are fused, weight-averaged)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(description="What to look for; `-word` tokens are negatives.")
    weight: float = Field(1.0, gt=0, le=MAX_WEIGHT, allow_inf_nan=False)


def _vector(value: Any) -> np.ndarray:
    try:
        v = np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError("vector must be a list of numbers") from None
    if not 0 < len(v) <= MAX_VECTOR_DIM:
        raise ValueError(f"vector must have 1 to {MAX_VECTOR_DIM} numbers, not {len(v)}")
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(v).all() or not np.isfinite(np.linalg.norm(v)) or not v.any():
            raise ValueError("the query vector must hold finite numbers, not all zero "
                             "(NaN, Inf or overflow given)")
    return v


#: A query embedding: any sequence of numbers in, a float32 numpy array inside.
Vector = Annotated[
    np.ndarray, PlainValidator(_vector),
    PlainSerializer(lambda v: [float(x) for x in v], return_type=list),
    WithJsonSchema({"type": "array", "items": {"type": "number"}, "minItems": 1,
                    "maxItems": MAX_VECTOR_DIM,
                    "description": "A query embedding (normalised to unit length)."})]


class SearchOptions(BaseModel):
    """Every search option that is safe to take from anyone (the HTTP request body).

    At least one of `text`, `vector` (or, in `SearchRequest`, `image`/`audio`) is needed.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True,
                              validate_default=False)

    text: str | list[str | TextTerm] | None = Field(
        None, description="A text, or several texts / {text, weight} terms (fused). "
        "`-word` tokens are negatives (\"beach -people\").")
    negative: list[str] = Field(default_factory=list,
                                description="Texts whose matches are pushed down.")
    vector: Vector | None = Field(None, description="A query embedding in the store's space.")
    k: int = Field(10, ge=1, le=MAX_K, description="Results per page.")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Results to skip (paging).")
    filters: dict[str, Any] | None = Field(
        None, max_length=MAX_FILTERS,
        description="Structured, injection-safe conditions per column, e.g. "
        "{\"price\": {\"lte\": 50}, \"colour\": \"red\"} (see mmsearch.filters).")
    modality: list[Modality] | None = Field(
        None, description="Only these kinds of items (also \"image,video\").")
    weights: dict[str, Annotated[float, Field(ge=0, le=MAX_WEIGHT, allow_inf_nan=False)]] = \
        Field(default_factory=dict, max_length=MAX_CHANNELS,
              description="Channel weights, e.g. {\"visual\": 1, \"text\": 0.5} (also "
              "\"text=0.5\"); default 1 each, 0 leaves a channel out.")
    fusion: Literal["sum", "rrf"] = Field(
        "sum", description="How channels combine: calibrated sum or reciprocal rank.")
    min_score: float | None = Field(
        None, allow_inf_nan=False,
        description="Keep results scoring at least this (calibrated z scale).")
    sort: str | None = Field(None, max_length=MAX_SPEC_CHARS,
                             description="Order by a metadata column: COL, -COL, COL:desc.")
    explain: bool = Field(False, description="Attach per-channel contributions to results.")
    rerank: int = Field(0, ge=0, le=MAX_RERANK,
                        description="Rescore the top N with a cross-attention image-text "
                        f"model (true: {DEFAULT_RERANK}).")
    reranker: str | None = Field(None, max_length=MAX_SPEC_CHARS,
                                 description="Reranker spec: blip, lite, blip:PATH ...")

    @field_validator("text", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, Mapping | TextTerm):
            value = [value]
        if not isinstance(value, Sequence):
            raise ValueError("text must be a string or a list of texts / (text, weight)")
        out = []
        for item in value:
            if isinstance(item, tuple | list):
                if len(item) != 2:
                    raise ValueError("a weighted text is a (text, weight) pair")
                item = {"text": item[0], "weight": item[1]}
            out.append(item)
        return out

    @field_validator("negative", mode="before")
    @classmethod
    def _negative(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("modality", mode="before")
    @classmethod
    def _modality(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str | list | tuple):
            raise ValueError("modality must be a name, comma-separated names or a list")
        names = value.split(",") if isinstance(value, str) else list(value)
        names = [str(n).strip().lower() for n in names if str(n).strip()]
        bad = [n for n in names if n not in MODALITIES]
        if bad or not names:
            raise ValueError(f"unknown modality {', '.join(bad) or repr(value)}; "
                             f"choose from {', '.join(MODALITIES)}")
        return list(dict.fromkeys(names))

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, Mapping):
            return dict(value)
        if not isinstance(value, str | list | tuple):
            raise ValueError("weights must be a mapping or CHANNEL=NUMBER strings")
        try:
            return parse_weights(value)
        except UsageError as e:
            raise ValueError(str(e)) from None

    @field_validator("sort")
    @classmethod
    def _sort(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                SortKey.parse(value)
            except UsageError as e:
                raise ValueError(str(e)) from None
        return value

    @field_validator("rerank", mode="before")
    @classmethod
    def _rerank(cls, value: Any) -> Any:
        if value is True:
            return DEFAULT_RERANK
        if value is False or value is None:
            return 0
        if isinstance(value, int) and value < 0:
            raise ValueError(f"rerank must be a number of results >= 0, not {value}")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("rerank must be a whole number of results")
        return value

    def __eq__(self, other: object) -> bool:
        return (type(other) is type(self)
                and self.model_dump(mode="json") == other.model_dump(mode="json"))  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    # -- derived views ------------------------------------------------------------------
    def terms(self) -> list[tuple[str, float]]:
        """The texts as (text, weight) pairs, as given (negative tokens not yet split)."""
        if self.text is None:
            return []
        items = [self.text] if isinstance(self.text, str) else self.text
        return [(t, 1.0) if isinstance(t, str) else (t.text, t.weight) for t in items]

    def positive_texts(self) -> list[str]:
        """The texts without their `-word` tokens (what a reranker reads)."""
        return [rest for rest in (split_negatives(t)[0] for t, _ in self.terms()) if rest]

    def modality_clause(self) -> str | None:
        """SQL for `modality` (names validated), or None."""
        if not self.modality:
            return None
        return "modality IN (" + ", ".join(f"'{n}'" for n in self.modality) + ")"


def _media(value: Any) -> Any:
    """A path (str or PathLike, kept as str), raw bytes, or a PIL image."""
    if value is None or isinstance(value, bytes | str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping) and set(value) == {"base64"}:
        return base64.b64decode(value["base64"], validate=True)
    if type(value).__module__.startswith("PIL."):
        return value
    raise ValueError(f"expected a file path, bytes or a PIL image, not {type(value).__name__}")


def _media_json(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    import io

    buf = io.BytesIO()
    value.save(buf, "PNG")
    return {"base64": base64.b64encode(buf.getvalue()).decode()}


#: An example image or sound: a path, bytes or a PIL image ({"base64": ...} as data).
Media = Annotated[Any, PlainValidator(_media), PlainSerializer(_media_json)]


class SearchRequest(SearchOptions):
    """A whole search, as the library runs it: `SearchOptions` plus trusted-only inputs.

    `where` is a SQL condition over the metadata columns (trusted input: never build it
    from what a client sends; `filters` is the safe alternative). `image` is a path, bytes
    or a PIL image; `audio` the path of a sound file (both read by this process).
    """

    where: str | None = Field(None, max_length=MAX_WHERE_CHARS,
                              description="SQL condition on metadata (trusted only).")
    image: Media = Field(None, description="An example image: path, bytes or PIL image.")
    audio: Media = Field(None, description="An example sound: the path of a sound file.")

    def has_query(self) -> bool:
        """Whether anything to search with is given (else: filters alone)."""
        return any(x is not None for x in (self.text, self.image, self.audio, self.vector))

    def condition(self) -> tuple[str | None, list[Any]]:
        """The SQL condition (None: none) and its parameters for `where`, `modality` and
        `filters` together."""
        clauses = [f"({c})" for c in (self.where, self.modality_clause()) if c]
        return condition(" AND ".join(clauses) or None, self.filters)

    @classmethod
    def build(cls, request: SearchRequest | Mapping[str, Any] | None = None,
              **options: Any) -> SearchRequest:
        """A request from another request or dict, with `options` set on top.

        Raises UsageError (naming each bad field) instead of pydantic's ValidationError.
        """
        if isinstance(request, SearchRequest) and not options:
            return request
        base = (request.model_dump(exclude_unset=True) if isinstance(request, BaseModel)
                else dict(request or {}))
        try:
            return cls.model_validate({**base, **options})
        except ValidationError as e:
            raise UsageError(describe(e)) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: the fields that differ from their defaults."""
        defaults = _DEFAULTS.get(type(self))
        if defaults is None:
            defaults = _DEFAULTS[type(self)] = type(self)().model_dump(mode="json")
        return {k: v for k, v in self.model_dump(mode="json").items() if v != defaults[k]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchRequest:
        """The request `to_dict` described (UsageError when it does not validate)."""
        return cls.build(data)


def describe(error: ValidationError) -> str:
    """One line naming each bad field and what is wrong with it."""
    out = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or "request"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "no such search option"
        out.append(f"{where}: {msg}")
    return "bad search request: " + "; ".join(out)
