"""mmsearch-lite's text side in numpy: a text query without importing torch.

MiniLM (the BERT of `minibert.py`) and the text projection head of `lite.py`, computed with
numpy from the same safetensors files, so a cold `mmsearch query "text"` never pays for
importing torch (the largest part of its start). Small batches (queries) run here; large
ones (indexing a catalog's texts) and everything about images go to the torch encoder,
loaded on first use. Both give the same vectors (tests/unit/test_lite_model.py).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Batches up to this many texts run in numpy; larger ones on the torch encoder.
NUMPY_MAX_TEXTS = 32
_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as torch's default."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(x.dtype))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _linear(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]


class NumpyBert:
    """MiniLM's forward pass: token ids -> last hidden states (N, L, width)."""

    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load_file

        from mmsearch.encoders.bert_tokens import bert_weight_name

        self.config = json.loads((folder / "config.json").read_text())
        self.w = {}
        for name, value in load_file(str(folder / "model.safetensors")).items():
            ours = bert_weight_name(name)
            if ours is not None:
                self.w[ours] = value.astype(np.float32)
        self.eps = float(self.config["layer_norm_eps"])
        self.heads = int(self.config["num_attention_heads"])
        self.layers = int(self.config["num_hidden_layers"])

    def __call__(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, eps = self.w, self.eps
        n, length = ids.shape
        x = w["word.weight"][ids] + w["position.weight"][:length][None] \
            + w["token_type.weight"][types]
        x = _layer_norm(x, w["norm.weight"], w["norm.bias"], eps)
        bias = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min
                        ).astype(np.float32)
        width = x.shape[-1]
        hd = width // self.heads
        for i in range(self.layers):
            p = f"layers.{i}"

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(n, length, self.heads, hd).transpose(0, 2, 1, 3)

            q, k, v = (split(_linear(x, w, f"{p}.{m}")) for m in ("query", "key", "value"))
            s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + bias
            s = np.exp(s - s.max(-1, keepdims=True))
            att = (s / s.sum(-1, keepdims=True)) @ v
            att = att.transpose(0, 2, 1, 3).reshape(n, length, width)
            x = _layer_norm(x + _linear(att, w, f"{p}.attn_out"), w[f"{p}.attn_norm.weight"],
                            w[f"{p}.attn_norm.bias"], eps)
            h = _linear(_gelu(_linear(x, w, f"{p}.inner")), w, f"{p}.out")
            x = _layer_norm(x + h, w[f"{p}.out_norm.weight"], w[f"{p}.out_norm.bias"], eps)
        return x


class NumpyTextHead:
    """The text projection head of `LiteHeads` (mean pool, attention pool, residual MLPs)."""

    def __init__(self, heads_path: Path) -> None:
        from safetensors import safe_open

        with safe_open(str(heads_path), framework="numpy") as f:
            self.config = json.loads((f.metadata() or {})["config"])
            self.w = {k[len("text."):]: f.get_tensor(k).astype(np.float32)
                      for k in f.keys() if k.startswith("text.")}  # noqa: SIM118
        self.blocks = int(self.config["text_blocks"])
        self.pooled = bool(int(self.config["text_pool_heads"]))

    def __call__(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        m = mask[..., None].astype(np.float32)
        x = (tokens * m).sum(1) / np.maximum(m.sum(1), 1.0)
        if self.pooled:
            s = _linear(_layer_norm(tokens, w["pool.norm.weight"], w["pool.norm.bias"], 1e-5),
                        w, "pool.score")
            s = np.where(mask[..., None] > 0, s, -np.inf)
            a = np.exp(s - s.max(1, keepdims=True))
            a = a / a.sum(1, keepdims=True)
            x = np.concatenate([x, np.einsum("nlh,nlc->nhc", a, tokens).reshape(len(x), -1)],
                               axis=-1)
        x = _linear(x, w, "inp")
        for i in range(self.blocks):
            b = f"blocks.{i}"
            h = _layer_norm(x, w[f"{b}.0.weight"], w[f"{b}.0.bias"], 1e-5)
            x = x + _linear(_gelu(_linear(h, w, f"{b}.1")), w, f"{b}.4")
        return x


class LiteLazy:
    """mmsearch-lite as the engine sees it: text queries in numpy (no torch), the torch
    encoder (`lite.LiteEncoder`) built on first need of images or large text batches."""

    spec = "mmsearch-lite"
    image_size = 260

    def __init__(self, device: str | None = None, heads_path: str | Path | None = None) -> None:
        from mmsearch.encoders.lite_files import HEADS_PATH

        self._device = device
        self._heads_path = Path(heads_path) if heads_path else HEADS_PATH
        self._full: Any = None
        self._text: tuple[Any, NumpyBert, NumpyTextHead] | None = None
        self._lock = threading.Lock()
        from safetensors import safe_open

        with safe_open(str(self._heads_path), framework="numpy") as f:
            self.dim = int(json.loads((f.metadata() or {})["config"])["dim"])

    @property
    def full(self) -> Any:
        """The torch encoder (both towers), loaded on first use."""
        if self._full is None:
            with self._lock:
                if self._full is None:
                    from mmsearch.encoders.lite import LiteEncoder

                    self._full = LiteEncoder(self._device, self._heads_path)
        return self._full

    @property
    def device(self) -> str:
        return self.full.device if self._full is not None else (self._device or "cpu")

    def preprocess(self, image: Any) -> Any:
        from mmsearch.encoders.lite import preprocess_image

        return preprocess_image(image)

    def encode_images(self, pixels: Any) -> np.ndarray:
        return self.full.encode_images(pixels)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dim) float32 unit rows."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) > NUMPY_MAX_TEXTS or self._full is not None:
            return self.full.encode_texts(texts)
        tokenizer, bert, head = self._text_side()
        with self._lock:
            batch = tokenizer(texts, truncation=True, max_length=64, return_tensors="np")
        mask = batch["attention_mask"]
        hidden = bert(batch["input_ids"], batch["token_type_ids"], mask)
        v = head(hidden, mask).astype(np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def _text_side(self) -> tuple[Any, NumpyBert, NumpyTextHead]:
        if self._text is None:
            with self._lock:
                if self._text is None:
                    from mmsearch.encoders.bert_tokens import FastTokenizer
                    from mmsearch.encoders.lite_files import text_tower_dir

                    folder = text_tower_dir()
                    self._text = (FastTokenizer(folder / "tokenizer.json"), NumpyBert(folder),
                                  NumpyTextHead(self._heads_path))
        return self._text
