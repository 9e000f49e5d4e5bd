"""What a query asks for: weighted positive parts, negatives, and how to present results."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mmsearch.errors import UsageError

FUSIONS = ("sum", "rrf")
#: A `-word` token in a text query: a negative, as in rclip ("beach -people").
#: Default weight of non-visual channels for queries without text (see channel_weight).
CROSS_MODAL_WEIGHT = 0.1
_NEGATIVE_TOKEN = re.compile(r"(?:(?<=\s)|^)-(\w[\w'-]*)")


@dataclass
class Part:
    """One embedded piece of a query.

    `kind` says which calibration applies: "text" (a text embedding) or "image" (an image
    or a user vector, which behave like stored visual vectors).
    """

    kind: str
    vector: np.ndarray
    weight: float
    label: str


@dataclass
class SortKey:
    """Order results by a metadata column instead of relevance."""

    column: str
    descending: bool = False

    @classmethod
    def parse(cls, spec: str) -> SortKey:
        """`col`, `-col` or `col:desc` / `col:asc`."""
        spec = spec.strip()
        descending = spec.startswith("-")
        spec = spec.lstrip("-")
        name, _, order = spec.partition(":")
        order = order.strip().lower()
        if order not in ("", "asc", "desc"):
            raise UsageError(f"bad sort order {order!r}: use COLUMN, -COLUMN, COLUMN:asc or "
                             "COLUMN:desc")
        if not re.fullmatch(r"[A-Za-z_]\w*", name.strip()):
            raise UsageError(f"bad sort column {name!r}")
        return cls(name.strip(), descending or order == "desc")


@dataclass
class Query:
    """A parsed query: positives and negatives (embedded), result shaping options."""

    positives: list[Part]
    negatives: list[Part] = field(default_factory=list)
    k: int = 10
    offset: int = 0
    min_score: float | None = None
    sort: SortKey | None = None
    fusion: str = "sum"
    weights: dict[str, float] = field(default_factory=dict)
    explain: bool = False
    #: the model spec whose query bank corrects text -> visual hubness (`planner.hubness`)
    hub: str | None = None

    def __post_init__(self) -> None:
        if not self.positives:
            raise UsageError("give a query: text, image or vector (negatives alone are not "
                             "enough)")
        if self.k < 1:
            raise UsageError("k must be at least 1")
        if self.offset < 0:
            raise UsageError("offset must be 0 or more")
        if self.fusion not in FUSIONS:
            raise UsageError(f"unknown fusion {self.fusion!r}; choose from "
                             f"{', '.join(FUSIONS)}")
        for name, w in self.weights.items():
            if not np.isfinite(w) or w < 0:
                raise UsageError(f"weight of channel {name!r} must be a number >= 0")

    def vector(self) -> np.ndarray:
        """The positives' weighted sum of unit vectors, normalised (used to find candidates
        and for `Result.similarity`)."""
        v = np.sum([p.weight * p.vector for p in self.positives], axis=0)
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)

    def channel_weight(self, channel: str) -> float:
        """The weight of a channel: as set, else 1, except for a query without text.

        A query by image or vector only ("more like this") compares like with like on the
        "visual" channel; its match against the other channels (a product's title, speech,
        tags) is cross-modal and much weaker evidence, so those channels count
        `CROSS_MODAL_WEIGHT` unless weighted explicitly. Otherwise a look-alike product with
        a fitting title would outrank the very product photographed.
        """
        if channel in self.weights:
            return float(self.weights[channel])
        if channel == "visual" or any(p.kind == "text" for p in self.positives):
            return 1.0
        return CROSS_MODAL_WEIGHT


def split_negatives(text: str) -> tuple[str, list[str]]:
    """Split `-word` tokens off a text query: "beach -people" -> ("beach", ["people"])."""
    negatives = _NEGATIVE_TOKEN.findall(text)
    rest = " ".join(_NEGATIVE_TOKEN.sub(" ", text).split())
    return rest, negatives


def text_terms(text: str | Sequence[str | tuple[str, float]] | None
               ) -> list[tuple[str, float]]:
    """Normalise `text=`: a string, or several strings / (string, weight) pairs."""
    if text is None:
        return []
    items = [text] if isinstance(text, str) else list(text)
    out = []
    for item in items:
        term, weight = (item, 1.0) if isinstance(item, str) else item
        if not isinstance(term, str):
            raise UsageError(f"text terms must be strings, not {type(term).__name__}")
        weight = float(weight)
        if not np.isfinite(weight) or weight <= 0:
            raise UsageError(f"weight of {term!r} must be a number > 0")
        out.append((term, weight))
    return out


def parse_weights(spec: Mapping[str, float] | str | Sequence[str] | None) -> dict[str, float]:
    """Channel weights from a mapping or "visual=1,text=0.5" strings."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return {str(k): float(v) for k, v in spec.items()}
    items = [spec] if isinstance(spec, str) else list(spec)
    out: dict[str, float] = {}
    for item in items:
        for piece in str(item).split(","):
            name, sep, value = piece.partition("=")
            try:
                if not sep or not name.strip():
                    raise ValueError
                out[name.strip()] = float(value)
            except ValueError:
                raise UsageError(f"bad weight {piece!r}: use CHANNEL=NUMBER, e.g. text=0.5"
                                 ) from None
    return out
