"""int8 rows and 4-bit groups in heads files: rebuilt to within half a scale step by the
numpy and the torch reader alike; the shipped file stays small and loads the same through
the torch and numpy encoders (test_lite_text)."""

from __future__ import annotations

import numpy as np
import pytest

from mmsearch.encoders.lite_files import (
    GROUP4,
    HEADS_PATHS,
    INT4,
    INT8,
    SCALE,
    SCALE4,
    SPEC4,
    dequantized,
    quantize_groups4,
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


def test_4bit_groups_rebuild_within_half_a_step_in_numpy_and_torch():
    import torch

    rng = np.random.default_rng(1)
    w = rng.normal(size=(6, 4 * GROUP4)).astype(np.float32)
    w[:, :GROUP4] *= 100.0  # one loud group per row does not coarsen the others
    w[2] = 0.0
    q, scale = quantize_groups4(w)
    assert q.dtype == np.uint8 and q.shape == (6, 2 * GROUP4) and scale.shape == (6, 4)
    step = np.repeat(scale.astype(np.float32), GROUP4, axis=1)
    back = dequantized({"m" + INT4: q.astype(np.float32),
                        "m" + SCALE4: scale.astype(np.float32)})
    assert set(back) == {"m"}
    assert (np.abs(back["m"] - w) <= 0.5 * step * 1.01 + 1e-6).all()
    assert np.abs(back["m"] - w)[:, GROUP4:].max() < 0.5  # not the loud group's step (~20)
    assert not back["m"][2].any()
    torch_back = dequantized({"m" + INT4: torch.from_numpy(q).float(),
                              "m" + SCALE4: torch.from_numpy(scale).float()})
    np.testing.assert_allclose(torch_back["m"].numpy(), back["m"], atol=0, rtol=0)
    with pytest.raises(ValueError, match="multiple"):
        quantize_groups4(w[:, :GROUP4])
