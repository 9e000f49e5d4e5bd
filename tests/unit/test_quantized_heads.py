"""int8 rows in heads files: rebuilt to within half a scale step; the shipped file stays
small and loads the same through the torch and numpy readers (test_lite_text)."""

from __future__ import annotations

import numpy as np

from mmsearch.encoders.lite_files import (
    HEADS_PATHS,
    INT8,
    SCALE,
    SPEC4,
    dequantized,
    quantize_rows,
    safetensors_header,
)


def test_rows_rebuild_within_half_a_step():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(40, 70)).astype(np.float32) * rng.uniform(0.01, 3, (40, 1))
    w[3] = 0.0  # an all-zero row
    q, scale = quantize_rows(w)
    assert q.dtype == np.int8 and scale.dtype == np.float16 and scale.shape == (40,)
    back = dequantized({"m" + INT8: q.astype(np.float32), "m" + SCALE: scale.astype(
        np.float32), "b": np.ones(3, np.float32)})
    assert set(back) == {"m", "b"}
    err = np.abs(back["m"] - w).max(axis=1)
    assert (err <= 0.5 * scale.astype(np.float32) * 1.01 + 1e-3 * np.abs(w).max(axis=1)).all()
    assert not back["m"][3].any()


def test_the_shipped_retrained_heads_are_int8_and_small():
    path = HEADS_PATHS[SPEC4]
    header = safetensors_header(path)[0]
    assert any(k.endswith(INT8) for k in header)
    assert path.stat().st_size < 5 * 2**20
