"""The numpy text side of the mmsearch-lite family gives the torch encoder's vectors, and a
text query through the registry imports no torch, timm, torchvision or transformers.

Real towers (dependencies of mmsearch) and the shipped heads; a random heads file with
every text-side option (several layers, a two-head pool, two blocks, retrained tower
tensors) stands for a future head of the family.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TEXTS = [
    "a dog running on the beach",
    "red mug",
    "Two children PLAYING in the snow, near a big red barn!",
    "two children playing " * 40,  # truncated at 64 tokens, as the torch tokenizer does
    "Ünïcödé café, naïve façade – 日本語のテキスト 🐕 ñandú",
    "",
    "   ",
]
HEAVY = ("torch", "timm", "torchvision", "transformers")


def _shipped() -> list[str]:
    from mmsearch.encoders.lite_files import HEADS_PATHS

    return sorted(HEADS_PATHS)  # every shipped generation, new ones included


@pytest.fixture(scope="module", params=_shipped())
def pair(request):
    from mmsearch.encoders.lite import load_lite
    from mmsearch.encoders.lite_text import LiteLazy

    return LiteLazy("cpu", spec=request.param), load_lite("cpu", spec=request.param)


def test_numpy_text_vectors_equal_the_torch_encoders(pair) -> None:
    lazy, full = pair
    assert lazy.spec == full.spec and lazy.dim == full.dim
    ours = lazy.encode_texts(TEXTS)
    assert lazy._full is None  # answered in numpy
    ref = full.encode_texts(TEXTS)
    assert ours.dtype == np.float32 and ours.shape == (len(TEXTS), full.dim)
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
    for i, text in enumerate(TEXTS):  # alone (no padding) as in one batch
        np.testing.assert_allclose(lazy.encode_texts([text])[0], ref[i], atol=1e-5, rtol=0)


def test_a_new_head_of_the_family_runs_in_numpy_too(tmp_path) -> None:
    """Every text-side option of `LiteHeads`: layers 0, 3 and 6 concatenated, an attention
    pool with two heads, two residual blocks, a retrained MiniLM layer in the heads file."""
    from mmsearch.encoders.lite import LiteHeads, build_text_tower, load_lite
    from mmsearch.encoders.lite_text import LiteLazy

    config = {"dim": 48, "image_hidden": 32, "image_blocks": 1, "image_pool_heads": 1,
              "text_hidden": 96, "text_blocks": 2, "text_pool_heads": 2,
              "text_layers": [0, 3, 6], "spec": "mmsearch-lite-next"}
    torch.manual_seed(1)
    heads = LiteHeads(config)
    _, bert = build_text_tower()
    heads.tower_state = {f"text.encoder.layer.2.{k}": v + 0.02 * torch.randn_like(v)
                         for k, v in bert.encoder.layer[2].state_dict().items()}
    path = tmp_path / "next.safetensors"
    heads.save(path)
    lazy = LiteLazy("cpu", heads_path=path)
    assert lazy.spec == "mmsearch-lite-next" and lazy.dim == 48
    ours = lazy.encode_texts(TEXTS)
    ref = load_lite("cpu", heads_path=str(path)).encode_texts(TEXTS)
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
    plain = LiteLazy("cpu", heads_path=path)
    plain.text_side().bert.w.update({k: v for k, v in LiteLazy(
        "cpu", spec="mmsearch-lite").text_side().bert.w.items() if ".layer.2." in k})
    assert np.abs(plain.encode_texts(TEXTS) - ours).max() > 1e-3  # the retrained layer counts


def test_two_retrained_layers_int8_and_4bit_run_the_same_in_numpy_and_torch(tmp_path) -> None:
    """MiniLM's layers 5 and 6 retrained (``tower.text.encoder.layer.4.*`` and ``.5.*``, as
    `train_lite_heads.py --tune-text-layers 2` writes them), stored by quantize_heads.py with
    layer 5's matrices as 4-bit groups and the rest as int8 rows."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training"))
    import quantize_heads

    from mmsearch.encoders.lite import LiteHeads, build_text_tower, load_lite
    from mmsearch.encoders.lite_files import INT4, INT8, safetensors_header
    from mmsearch.encoders.lite_text import LiteLazy

    config = {"dim": 32, "image_hidden": 32, "image_blocks": 1, "image_pool_heads": 1,
              "text_hidden": 64, "text_blocks": 1, "text_pool_heads": 1,
              "spec": "mmsearch-lite-two"}
    torch.manual_seed(2)
    heads = LiteHeads(config)
    _, bert = build_text_tower()
    heads.tower_state = {f"text.encoder.layer.{i}.{k}": v + 0.02 * torch.randn_like(v)
                         for i in (4, 5) for k, v in bert.encoder.layer[i].state_dict().items()}
    src, path = tmp_path / "f16.safetensors", tmp_path / "q.safetensors"
    heads.save(src)
    quantize_heads.main([str(src), str(path), "--min-size", "4096",
                         "--int4", "tower.text.encoder.layer.4."])
    header = safetensors_header(path)[0]
    assert "tower.text.encoder.layer.4.intermediate.dense.weight" + INT4 in header
    assert "tower.text.encoder.layer.5.intermediate.dense.weight" + INT8 in header
    ours = LiteLazy("cpu", heads_path=path).encode_texts(TEXTS)
    ref = load_lite("cpu", heads_path=str(path)).encode_texts(TEXTS)
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
    for layer in (4, 5):  # each retrained layer counts
        plain = LiteLazy("cpu", heads_path=path)
        plain.text_side().bert.w.update({k: v for k, v in LiteLazy(
            "cpu", spec="mmsearch-lite").text_side().bert.w.items() if f".layer.{layer}." in k})
        assert np.abs(plain.encode_texts(TEXTS) - ours).max() > 1e-3


def test_retrained_text_tensors_must_fit(tmp_path) -> None:
    from mmsearch.encoders.lite import LiteHeads
    from mmsearch.encoders.lite_text import LiteLazy
    from mmsearch.errors import MmsearchError

    config = {"dim": 16, "image_hidden": 16, "image_blocks": 1, "image_pool_heads": 0,
              "text_hidden": 16, "text_blocks": 1, "text_pool_heads": 0}
    heads = LiteHeads(config)
    heads.tower_state = {"text.encoder.layer.1.output.dense.weight": torch.zeros(3, 3)}
    heads.save(tmp_path / "bad.safetensors")
    with pytest.raises(MmsearchError, match="does not fit"):
        LiteLazy("cpu", heads_path=tmp_path / "bad.safetensors").encode_texts(["a dog"])


def test_gelu_matches_torch() -> None:
    from mmsearch.encoders.lite_text import gelu

    x = np.linspace(-12, 12, 20001, dtype=np.float32)
    ref = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(gelu(x), ref, atol=2e-6, rtol=0)


def test_images_and_large_batches_load_the_torch_encoder(pair) -> None:
    lazy, full = pair
    from mmsearch.encoders.lite_text import NUMPY_MAX_TEXTS, LiteLazy

    fresh = LiteLazy("cpu", spec=lazy.spec)
    many = [f"photo number {i}" for i in range(NUMPY_MAX_TEXTS + 1)]
    np.testing.assert_allclose(fresh.encode_texts(many), full.encode_texts(many), atol=1e-5)
    assert fresh._full is not None
    pixels = torch.zeros(1, 3, 260, 260)
    np.testing.assert_allclose(fresh.encode_images(pixels), full.encode_images(pixels),
                               atol=1e-6)


def test_a_text_query_imports_nothing_heavy() -> None:
    """A fresh process: the registry's default offline model embeds a query without torch,
    timm, torchvision or transformers (the cold `mmsearch query` path)."""
    code = ("import sys, json; from mmsearch.encoders.registry import load_encoder; "
            "enc = load_encoder('mmsearch-lite-4', None); "
            "v = enc.encode_texts(['a dog on the beach']); "
            f"print(json.dumps({{'heavy': [m for m in {HEAVY!r} if m in sys.modules], "
            "'shape': list(v.shape)}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"heavy": [], "shape": [1, 256]}
