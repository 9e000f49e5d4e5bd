"""The real offline mmsearch-lite model: shapes, norms and determinism.

The tower packages are dependencies of mmsearch, so their absence is a broken install and
fails here rather than skipping. Its retrieval quality is checked in acceptance/.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="module")
def enc():
    from mmsearch.encoders.lite import load_lite

    return load_lite("cpu")


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (120, 90, 3), dtype=np.uint8), "RGB")


def test_spec_dims_and_unit_norm(enc) -> None:
    assert enc.spec == "mmsearch-lite"
    assert enc.device == "cpu"
    pixels = torch.stack([enc.preprocess(_image(0)), enc.preprocess(_image(1))])
    assert pixels.shape == (2, 3, 260, 260)
    img = enc.encode_images(pixels)
    txt = enc.encode_texts(["a dog runs on the beach", "two people ride bicycles"])
    for v in (img, txt):
        assert v.dtype == np.float32
        assert v.shape == (2, enc.dim)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert enc.encode_texts([]).shape == (0, enc.dim)


def test_preprocess_accepts_other_modes(enc) -> None:
    gray = _image(2).convert("L")
    assert enc.preprocess(gray).shape == (3, 260, 260)


def test_deterministic_and_batch_independent(enc) -> None:
    pixels = torch.stack([enc.preprocess(_image(i)) for i in range(3)])
    a = enc.encode_images(pixels)
    b = enc.encode_images(pixels)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(enc.encode_images(pixels[1:2])[0], a[1], atol=1e-4)
    texts = ["a red car", "a man climbing a rock wall with a rope"]
    t = enc.encode_texts(texts)
    np.testing.assert_array_equal(t, enc.encode_texts(texts))
    np.testing.assert_allclose(enc.encode_texts(texts[1:])[0], t[1], atol=1e-4)


def test_plain_torch_text_tower_matches_transformers():
    """The query path's MiniLM (plain PyTorch + tokenizers) computes transformers' states."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from mmsearch.encoders.lite import MAX_TOKENS, text_tower_dir
    from mmsearch.encoders.minibert import load_minibert

    folder = text_tower_dir()
    tok, ours = load_minibert(folder)
    ref_tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    ref = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    texts = ["a dog runs on the beach", "x", "two children playing football " * 20]
    a = tok(texts, padding=True, truncation=True, max_length=MAX_TOKENS)
    b = ref_tok(texts, padding=True, truncation=True, max_length=MAX_TOKENS,
                return_tensors="pt")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(a[key], b[key]), key
    with torch.inference_mode():
        mask = a["attention_mask"].bool()
        diff = (ours.eval()(**a).last_hidden_state - ref(**b).last_hidden_state)[mask]
    assert float(diff.abs().max()) < 1e-4


def test_text_queries_in_numpy_match_the_torch_encoder_without_importing_torch(enc):
    """The registry's mmsearch-lite answers small text batches in numpy (no torch import in
    a fresh process) with the torch encoder's vectors."""
    import json
    import subprocess
    import sys

    texts = ["a dog running on the beach", "red mug", "two children playing " * 20]
    code = ("import sys, json; from mmsearch.encoders.registry import load_encoder; "
            "enc = load_encoder('mmsearch-lite', 'cpu'); "
            f"v = enc.encode_texts({texts!r}); "
            "print(json.dumps({'torch': 'torch' in sys.modules, 'v': v.tolist()}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                    text=True, check=True).stdout)
    assert out["torch"] is False
    ref = enc.encode_texts(texts)
    assert np.abs(np.array(out["v"], np.float32) - ref).max() < 1e-4
