"""Per-channel score calibration: raw cosines -> z-scores against a null distribution.

Raw cosines are not comparable across modality pairs: with CLIP-like models a matching
caption scores ~0.3 against its photo while unrelated photos score ~0.5 against each
other. For each (query kind, channel) pair we measure the distribution of cosines between
*probe queries* and *random stored rows of that channel* (pairs from the same item
excluded) and keep its mean and standard deviation. A score is then
`z = (cosine - mean) / std`: how many standard deviations a row sits above what an
unrelated row scores for that kind of query. z ~ 0 is chance; 3+ is a clear match for
either modality, so `min_score` means the same thing whatever the query.

Probes: for "image" queries, a sample of stored visual rows (an image query *is* an image
embedding); for "text" queries, stored text-like rows (text, speech, tags) plus, when an
encoder is at hand, the embeddings of `PROBE_TEXTS` (generic captions). The writer measures
after each write that changed the store enough and stores the result in the manifest
(`calibration`), so it is part of the same atomic commit protocol as everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mmsearch.vectors import LiveVectors

#: Generic captions used as text probes ("random queries") when an encoder is loaded.
PROBE_TEXTS = (
    "a photo of a dog", "a man riding a bicycle", "two children playing on the beach",
    "a red car parked on the street", "a plate of food on a table", "a city skyline at night",
    "a woman in a blue dress", "a cat sleeping on a sofa", "mountains covered in snow",
    "people walking in a crowded market", "a bird sitting on a branch", "a black shoe",
    "a wooden chair", "a football game in a stadium", "a boat on a lake at sunset",
    "a close-up of a flower", "an old building with columns", "a child eating ice cream",
    "a laptop on a desk", "a group of friends laughing", "a horse in a field",
    "a bowl of fruit", "a man playing guitar on stage", "a train at a station",
)
VERSION = 1
MAX_PROBES = 64
MAX_TARGETS = 2048
MIN_STD = 1e-3
#: Re-measure once the number of rows changed by this share since the last measurement.
REFRESH_SHARE = 0.2
TEXT_LIKE = frozenset({"text", "speech", "tags", "ocr"})


@dataclass(frozen=True)
class Stats:
    """Null distribution of cosines for one (query kind, channel) pair."""

    mean: float
    std: float
    n: int

    def z(self, cosines: np.ndarray) -> np.ndarray:
        return (cosines - self.mean) / self.std


class Calibration:
    """Stats per (kind, channel); `default_stats` where nothing was measured."""

    def __init__(self, stats: dict[tuple[str, str], Stats], rows: int = 0,
                 dim: int = 0, channels: list[str] | None = None,
                 text_probes: bool = False) -> None:
        self.stats = stats
        self.rows = rows
        self.dim = dim
        self.channels = sorted(channels if channels is not None else {c for _, c in stats})
        self.text_probes = text_probes  # whether generic text probes were used

    def get(self, kind: str, channel: str) -> tuple[Stats, bool]:
        """(stats, measured) for a pair; unmeasured pairs get the random-vector null."""
        found = self.stats.get((kind, channel))
        if found is not None:
            return found, True
        # cosines of random unit vectors: mean 0, std 1/sqrt(dim)
        return Stats(0.0, 1.0 / np.sqrt(max(self.dim, 1)), 0), False

    def merged(self, other: Calibration) -> Calibration:
        """These stats, with pairs this one lacks taken from `other`."""
        return Calibration({**other.stats, **self.stats}, self.rows or other.rows,
                           self.dim or other.dim, sorted({*self.channels, *other.channels}))

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, "rows": self.rows, "dim": self.dim,
                "channels": self.channels, "text_probes": self.text_probes,
                "stats": {f"{k}>{c}": {"mean": round(s.mean, 6), "std": round(s.std, 6),
                                       "n": s.n} for (k, c), s in sorted(self.stats.items())}}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Calibration:
        if not data or data.get("version") != VERSION:
            return cls({})
        stats = {}
        for key, s in data.get("stats", {}).items():
            kind, _, channel = key.partition(">")
            stats[(kind, channel)] = Stats(float(s["mean"]), max(float(s["std"]), MIN_STD),
                                           int(s["n"]))
        return cls(stats, int(data.get("rows", 0)), int(data.get("dim", 0)),
                   list(data.get("channels", [])), bool(data.get("text_probes")))

    def needs_refresh(self, rows: int, channels: set[str], have_text_probes: bool) -> bool:
        """True when the store changed enough (or text probes became available)."""
        if not self.rows or channels != set(self.channels):
            return True
        if abs(rows - self.rows) > REFRESH_SHARE * max(self.rows, 1):
            return True
        return have_text_probes and not self.text_probes


def measure(vectors: LiveVectors | np.ndarray, channels: np.ndarray, items: np.ndarray,
            text_probes: np.ndarray | None = None, seed: int = 0) -> Calibration:
    """Measure the null distribution for every (kind, channel) pair the data allows.

    Args:
        vectors: the live rows' unit vectors.
        channels: each row's channel name (str array).
        items: each row's item code (ints); pairs within one item are not counted.
        text_probes: embedded generic texts (optional).
    """
    if not isinstance(vectors, LiveVectors):
        vectors = LiveVectors.from_array(np.asarray(vectors, dtype=np.float32))
    rng = np.random.default_rng(seed)
    n = len(channels)
    probe_sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    visual = np.flatnonzero(channels == "visual")
    textlike = np.flatnonzero(np.isin(channels, list(TEXT_LIKE)))
    for kind, pool in (("image", visual), ("text", textlike)):
        rows = _sample(rng, pool, MAX_PROBES)
        vecs, owners = vectors.take(rows), items[rows]
        if kind == "text" and text_probes is not None and len(text_probes):
            vecs = np.concatenate([vecs, np.asarray(text_probes, np.float32)])
            owners = np.concatenate([owners, np.full(len(text_probes), -1, owners.dtype)])
        if len(vecs):
            probe_sets[kind] = (vecs, owners)
    stats: dict[tuple[str, str], Stats] = {}
    for channel in np.unique(channels):
        targets = _sample(rng, np.flatnonzero(channels == channel), MAX_TARGETS)
        tvecs, towners = vectors.take(targets), items[targets]
        for kind, (pvecs, powners) in probe_sets.items():
            cos = pvecs @ tvecs.T
            keep = powners[:, None] != towners[None, :]
            values = cos[keep]
            if len(values) < 8:
                continue
            stats[(kind, str(channel))] = Stats(float(values.mean()),
                                                max(float(values.std()), MIN_STD), len(values))
    return Calibration(stats, n, vectors.dim, [str(c) for c in np.unique(channels)],
                       text_probes is not None and len(text_probes) > 0)


def _sample(rng: np.random.Generator, rows: np.ndarray, n: int) -> np.ndarray:
    if len(rows) <= n:
        return rows
    return np.sort(rng.choice(rows, n, replace=False))


def update_store(store: Any, text_probes: np.ndarray | None = None) -> Calibration | None:
    """Re-measure after a write when the store changed enough; commit it in the manifest.

    Call inside `store.writer()`. Returns the new calibration, or None when kept as is.
    """
    from mmsearch.planner.groups import build_layout

    current = Calibration.from_json(store.manifest.get("calibration"))
    have_probes = text_probes is not None
    rows = int(store.manifest.get("rows") or 0)
    if not current.needs_refresh(rows, set(current.channels), have_probes):
        # cheap check first (no table read): a channel new since then is measured at
        # query time until the next refresh
        return None
    table, vectors = store.live(columns=["key", "id", "modality", "channel"])
    if not len(table):
        return None
    lay = build_layout(table)
    if not current.needs_refresh(len(table), set(lay.names), have_probes):
        return None
    calibration = measure(vectors, lay.channel, lay.item, text_probes)
    store.commit([], extra={"calibration": calibration.to_json()})
    return calibration
