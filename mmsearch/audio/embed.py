"""Main-space vectors of audio parts: transcripts as text, tag windows as weighted labels.

A tag window's vector is the normalised sum of its top labels' text embeddings weighted by
their scores, so its cosine with a text query q is proportional to
Σ score(label) · cos(q, label) — the tagger's confidence spread over what each label means
to the text encoder (PROVENANCE of YAMNet suggests the same). Label embeddings are
computed once per encoder (521 short texts), so tagging costs no text-encoder call per
window, unlike embedding "Dog 0.91; Bark 0.85" as a sentence.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from mmsearch.audio.analyze import AudioPart
from mmsearch.encoders.base import Encoder

_cache: dict[tuple[int, tuple[str, ...]], np.ndarray] = {}
_lock = threading.Lock()


def label_vectors(encoder: Encoder, labels: Sequence[str]) -> np.ndarray:
    """Text embeddings (n_labels, dim) of the tag names, cached per encoder."""
    key = (id(encoder), tuple(labels))
    with _lock:
        if key not in _cache:
            _cache[key] = np.concatenate([encoder.encode_texts(list(labels[i:i + 128]))
                                          for i in range(0, len(labels), 128)])
        return _cache[key]


def tags_vector(labels: np.ndarray, tags: Sequence[tuple[int, float]]) -> np.ndarray:
    """The unit vector of one tag window from its (label index, score) pairs."""
    if not tags:
        return np.zeros(labels.shape[1], np.float32)
    idx = np.array([i for i, _ in tags])
    w = np.array([s for _, s in tags], dtype=np.float32)
    v = w @ labels[idx]
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
        table = label_vectors(encoder, labels)
        for i in tagged:
            out[i] = tags_vector(table, parts[i].tags)
    return out
