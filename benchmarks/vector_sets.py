"""Vector sets of different intrinsic dimension, shared by the recall tests and benchmarks.

- `subspace`: points near a low-dimensional linear subspace (intrinsic dimension `rank`).
- `mixture`: the clustered set of benchmarks/ann.py (2,000 centres, a 32-d low-rank spread
  per cluster plus a little isotropic noise), scaled down by `centers`.
- `isotropic`: cluster centres with isotropic noise filling every dimension (the issue's
  hard case: 2,000 centres in 384-d gave recall@10 0.910 at the old fixed defaults).
- `lite_images`: real image embeddings of Flickr8k training images from the offline model
  mmsearch-lite (needs ../shared; cached as .npy because encoding runs a few images/s).

Every set is unit-normalised float32; `split` draws queries from the same generator.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def subspace(n: int, dim: int = 128, rank: int = 6, seed: int = 1) -> np.ndarray:
    """Near a `rank`-dimensional subspace (fixed basis) plus faint noise."""
    basis = np.linalg.qr(np.random.default_rng(0).standard_normal((dim, rank)))[0].T
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, rank)) @ basis + 0.01 * rng.standard_normal((n, dim))
    return _unit(x)


def isotropic(n: int, dim: int = 384, centers: int = 2000, noise: float = 1.0,
              seed: int = 1) -> np.ndarray:
    """Random centres (fixed) plus isotropic Gaussian noise of norm about `noise`."""
    c = np.random.default_rng(0).standard_normal((centers, dim)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, centers, n)
    x = c[labels] + rng.standard_normal((n, dim), dtype=np.float32) * (noise / np.sqrt(dim))
    return _unit(x)


def mixture(n: int, dim: int = 512, centers: int = 2000, rank: int = 32,
            seed: int = 1) -> np.ndarray:
    """benchmarks/ann.py's mixture: per-cluster low-rank spread plus faint isotropic noise.

    Rows come in random cluster order; memory stays at the output array (4 × n × dim B).
    """
    base = np.random.default_rng(0)
    cen = base.standard_normal((centers, dim), dtype=np.float32)
    cen /= np.linalg.norm(cen, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, centers, n)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(centers + 1))
    out = np.empty((n, dim), np.float32)
    for c in range(centers):
        a, b = bounds[c], bounds[c + 1]
        if a == b:
            continue
        shape = (np.random.default_rng(10_000 + c).standard_normal((rank, dim), dtype=np.float32)
                 / np.sqrt(dim * rank))
        z = rng.standard_normal((b - a, rank), dtype=np.float32) * 0.8
        x = cen[c] + z @ shape
        x += rng.standard_normal((b - a, dim), dtype=np.float32) * (0.5 / np.sqrt(dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[order[a:b]] = x  # rows of cluster c land at random positions
    return out


def cache_dir() -> Path:
    """Where computed embeddings are cached: $MMSEARCH_BENCH_CACHE or ~/.cache/mmsearch-bench."""
    return Path(os.environ.get("MMSEARCH_BENCH_CACHE") or
                Path.home() / ".cache" / "mmsearch-bench")


def lite_images(image_dir: Path, n: int, cache: Path | None = None) -> np.ndarray:
    """mmsearch-lite embeddings of the first n images (sorted names) of `image_dir`,
    computed once and cached (keyed by the model's head weights; see `cache_dir`)."""
    import torch
    from PIL import Image

    from mmsearch.encoders.lite import HEADS_PATH, load_lite

    tag = hashlib.sha256(HEADS_PATH.read_bytes()).hexdigest()[:12]
    files = sorted(image_dir.glob("*.jpg"))[:n]
    cache = cache or cache_dir()
    path = cache / f"lite-images-{tag}-{len(files)}.npy"
    if path.exists():
        return np.load(path)
    enc = load_lite()
    out = []
    for lo in range(0, len(files), 32):
        batch = [enc.preprocess(Image.open(f).convert("RGB")) for f in files[lo:lo + 32]]
        with torch.inference_mode():
            out.append(enc.encode_images(torch.stack(batch)))
    vecs = _unit(np.concatenate(out))
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vecs)
    tmp.replace(path)
    return vecs
