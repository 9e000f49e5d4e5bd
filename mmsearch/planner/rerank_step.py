"""Rerank the top hits with a cross-attention image-text model.

The reranker's match log-odds (`Reranker.match_logits`: logit(p) of BLIP's match
probability p) are added to the first-stage score: a confident match moves up, a confident
non-match moves down (possibly below hits that were not reranked), and the channels that
found the item still count.
Hits without a picture to show the model (precomputed vectors, text rows) keep their
first-stage score. Video moments are judged on the frame at the moment's start.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image

from mmsearch import config
from mmsearch.errors import BadMediaError
from mmsearch.ingest.images import decode_image
from mmsearch.ingest.video import read_frame
from mmsearch.planner.plan import Hit
from mmsearch.rerank.base import Reranker
from mmsearch.view.snapshot import Snapshot


def hit_image(record: dict[str, Any]) -> Image.Image | None:
    """The picture a hit stands for (a video's frame at its moment), or None."""
    path = record.get("path")
    if not path:
        return None
    try:
        if record.get("modality") == "video":
            return read_frame(path, float(record.get("start_s") or 0.0))
        if record.get("modality", "image") == "image":
            return decode_image(Path(path).read_bytes(), config.MAX_IMAGE_PIXELS).image
    except (OSError, BadMediaError):
        return None
    return None


def rerank_hits(hits: list[Hit], n: int, text: str, reranker: Reranker,
                snap: Snapshot) -> list[Hit]:
    """Hits with the first `n` rescored by `reranker` and everything re-ordered."""
    top = hits[:n]
    records = snap.records([h.row for h in top])
    images, scored = [], []
    for hit, record in zip(top, records, strict=True):
        image = hit_image(record)
        if image is not None:
            images.append(image)
            scored.append(hit)
        elif hit.explain:
            hit.explain["rerank"] = {"skipped": "no image to rerank on"}
    if images:
        logits = reranker.match_logits(text, images)
        for hit, logit in zip(scored, logits, strict=True):
            logit = float(logit)
            if hit.explain:
                p = 1 / (1 + math.exp(-min(max(logit, -50.0), 50.0)))
                hit.explain["rerank"] = {"model": reranker.spec, "prob": round(p, 4),
                                         "logit": round(logit, 4),
                                         "first_stage": round(hit.score, 4)}
            hit.score += logit
    return sorted(hits, key=lambda h: -h.score)
