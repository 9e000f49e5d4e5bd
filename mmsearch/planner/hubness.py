"""Hubness correction for text queries (querybank normalisation).

In a shared embedding space some images are close to almost every text: "hubs" (a busy
street, a crowd) that top many unrelated queries. Following querybank normalisation
(Bogolin et al., CVPR 2022, "Cross Modal Retrieval with Querybank Normalisation"), a model
may ship a bank of typical query embeddings; a stored row's hubness is its soft maximum
similarity to the bank, `tau * logsumexp(bank @ v / tau)`, and a text query's cosine with a
visual row is lowered by `beta * (hubness(row) - centre)`, the centre being the mean
hubness of a fixed sample of the snapshot's visual rows (so the average row is untouched
and the calibrated z scale keeps its meaning). Only text -> visual matches are corrected;
`Result.similarity` stays the raw cosine.

The bank ships beside the model's heads as `mmsearch/models/<spec>.bank.safetensors`
(`training/build_hub_bank.py` makes it from training captions); a model without one is not
corrected; `MMSEARCH_HUBNESS=off` turns the correction off.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.encoders.lite_files import HEADS_PATHS
from mmsearch.settings import settings

#: Visual rows sampled per snapshot to centre the correction.
CENTRE_SAMPLE = 256
_MEMO = "hubness"


@dataclass(frozen=True)
class HubPrior:
    """A bank of query embeddings (rows: unit vectors) and how strongly to correct."""

    bank: np.ndarray
    tau: float
    beta: float
    source: str = ""

    def hubness(self, vectors: np.ndarray) -> np.ndarray:
        """Each vector's soft maximum similarity to the bank (`tau * logsumexp(sim / tau)`)."""
        sim = np.asarray(vectors, dtype=np.float32) @ self.bank.T
        sim /= self.tau
        top = sim.max(axis=1, keepdims=True)
        np.exp(sim - top, out=sim)
        return self.tau * (top[:, 0] + np.log(sim.sum(axis=1))).astype(np.float64)


def bank_path(spec: str) -> Path | None:
    """Where a shipped model's query bank lives, beside its heads (the file may not exist);
    None for any other spec (a user's own model has no bank)."""
    heads = HEADS_PATHS.get(spec)
    return None if heads is None else heads.with_name(f"{spec}.bank.safetensors")


@functools.lru_cache(maxsize=8)
def load(spec: str) -> HubPrior | None:
    """The shipped bank of model `spec`, or None when it has none."""
    path = bank_path(spec)
    if path is None or not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        bank = np.ascontiguousarray(f.get_tensor("bank"), dtype=np.float32)
    config = json.loads(meta.get("config", "{}"))
    return HubPrior(bank, float(config["tau"]), float(config["beta"]), path.name)


def spec_of(manifest: dict[str, Any]) -> str | None:
    """The store's model spec when that model ships a bank (and MMSEARCH_HUBNESS is not
    `off`), else None."""
    if not settings().hubness:
        return None
    spec = (manifest.get("model") or {}).get("spec")
    return spec if isinstance(spec, str) and load(spec) is not None else None


def write_bank(path: str | Path, bank: np.ndarray, tau: float, beta: float,
               **provenance: Any) -> None:
    """Save a bank (float16 unit rows) with its settings and provenance."""
    from safetensors.numpy import save_file

    bank = np.asarray(bank, dtype=np.float32)
    bank = bank / np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
    config = {"tau": float(tau), "beta": float(beta), **provenance}
    save_file({"bank": bank.astype(np.float16)}, str(path),
              metadata={"config": json.dumps(config, sort_keys=True)})


def penalties(snap: Any, prior: HubPrior, rows: np.ndarray, vectors: np.ndarray,
              visual: np.ndarray) -> np.ndarray:
    """`beta * (hubness - centre)` for each of `rows` (their `vectors` given) where
    `visual` is true, 0 elsewhere; each row's hubness is computed once per snapshot."""
    out = np.zeros(len(rows))
    if not visual.any():
        return out
    memo = _memo(snap, prior)
    at = np.flatnonzero(visual)
    need = at[np.isnan(memo["hub"][rows[at]])]
    if len(need):
        memo["hub"][rows[need]] = prior.hubness(vectors[need])
    out[at] = prior.beta * (memo["hub"][rows[at]] - memo["centre"])
    return out


def _memo(snap: Any, prior: HubPrior) -> dict[str, Any]:
    """Per snapshot: each row's hubness (NaN until needed) and the centre."""
    memo = snap.memo.get(_MEMO)
    if memo is None or memo["prior"] is not prior:
        from mmsearch.planner.groups import layout

        visual = layout(snap).channel_rows("visual")
        rng = np.random.default_rng(0)
        sample = np.sort(visual[rng.choice(len(visual), min(CENTRE_SAMPLE, len(visual)),
                                           replace=False)])
        hub = np.full(len(snap), np.nan, dtype=np.float32)  # 4 B a row, filled on use
        if len(sample):
            hub[sample] = prior.hubness(snap.vectors.take(sample))
        centre = float(hub[sample].mean()) if len(sample) else 0.0
        memo = snap.memo[_MEMO] = {"prior": prior, "hub": hub, "centre": centre}
    return memo


def describe(spec: str | None) -> dict[str, Any] | None:
    """What `mmsearch info` shows: the bank's size and settings, or None."""
    prior = load(spec) if spec else None
    if prior is None:
        return None
    return {"bank": prior.source, "queries": len(prior.bank), "tau": prior.tau,
            "beta": prior.beta}
