"""Main-space vectors of audio parts: transcripts as text, tag windows as weighted labels.

A tag window's vector is the normalised sum of its top labels' text embeddings weighted by
their scores, so its cosine with a text query q is proportional to
Σ score(label) · cos(q, label) — the tagger's confidence spread over what each label means
to the text encoder (PROVENANCE of YAMNet suggests the same). A label's embedding is
computed once per encoder and process, when it first occurs, so tagging costs no
text-encoder call per window, unlike embedding "Dog 0.91; Bark 0.85" as a sentence.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Sequence

import numpy as np

from mmsearch.audio.analyze import AudioPart
from mmsearch.encoders.base import Encoder

_cache: weakref.WeakKeyDictionary[Encoder, dict[str, np.ndarray]] = (
    weakref.WeakKeyDictionary())
_lock = threading.Lock()


def label_vectors(encoder: Encoder, labels: Sequence[str],
                  needed: Iterable[int]) -> dict[int, np.ndarray]:
    """Text embeddings of the `needed` tag names (by class index), cached per encoder.

    Only names that occur are embedded (a few dozen per collection, not all 521).
    """
    with _lock:
        known = _cache.setdefault(encoder, {})
        wanted = sorted(set(needed))
        missing = [labels[i] for i in wanted if labels[i] not in known]
        for i in range(0, len(missing), 128):
            chunk = missing[i:i + 128]
            known.update(zip(chunk, encoder.encode_texts(chunk), strict=True))
        return {i: known[labels[i]] for i in wanted}


def tags_vector(vectors: dict[int, np.ndarray], tags: Sequence[tuple[int, float]],
                dim: int) -> np.ndarray:
    """The unit vector of one tag window from its (label index, score) pairs."""
    if not tags:
        return np.zeros(dim, np.float32)
    v = np.sum([score * vectors[i] for i, score in tags], axis=0)
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def part_vectors(encoder: Encoder, parts: Sequence[AudioPart],
                 labels: Sequence[str] | None) -> np.ndarray:
    """Main-space unit vectors (len(parts), dim) of tag windows and transcript segments."""
    out = np.zeros((len(parts), encoder.dim), np.float32)
    speech = [i for i, p in enumerate(parts) if p.channel == "speech"]
    if speech:
        out[speech] = encoder.encode_texts([parts[i].text for i in speech])
    tagged = [i for i, p in enumerate(parts) if p.channel == "tags"]
    if tagged:
        assert labels is not None, "tag windows need the tagger's label names"
        table = label_vectors(encoder, labels, (t for i in tagged for t, _ in parts[i].tags))
        for i in tagged:
            out[i] = tags_vector(table, parts[i].tags, encoder.dim)
    return out
