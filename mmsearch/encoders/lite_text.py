"""The mmsearch-lite family's text side in numpy: a text query without importing torch.

MiniLM (BERT) and the text projection head of `lite.LiteHeads`, computed with numpy from
the same safetensors files (the tower's package, the shipped heads with any retrained
``tower.text.*`` tensors), so a cold `mmsearch query "text"` never pays for importing torch,
timm or transformers. Generic over what a heads file's config says of the text side:
``text_layers`` (MiniLM layers whose token states are concatenated; 0 is the embeddings),
``text_pool_heads`` (0: mean pool only), ``text_blocks``. Small batches (queries, the
calibration probes) run here; large ones (a catalog's texts) and everything about images go
to the torch encoder (`lite.LiteEncoder`), built on first need. Both give the same vectors
(tests/unit/test_lite_text.py).
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmsearch.encoders.base import Encoder
from mmsearch.encoders.lite_files import (
    IMAGE_SIZE,
    LATEST,
    MAX_TOKENS,
    dequantized,
    head_config,
    heads_file,
    safetensors_header,
    text_tower_dir,
)
from mmsearch.errors import MmsearchError

if TYPE_CHECKING:
    import torch
    from PIL import Image

#: Batches up to this many texts run in numpy; larger ones on the torch encoder.
NUMPY_MAX_TEXTS = 32
_HEAD_EPS = 1e-5  # nn.LayerNorm's default, used by the heads


def _erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function, fractional error < 1.2e-7 (Numerical Recipes'
    Chebyshev fit); float64 in, float64 out."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    r = t * np.exp(poly)
    return np.where(x >= 0, r, 2.0 - r)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU as torch's default: x * Phi(x)."""
    x64 = x.astype(np.float64)
    return (0.5 * x64 * _erfc(-x64 / math.sqrt(2.0))).astype(x.dtype)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _linear(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]


def _softmax(s: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(s - s.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def bert_key(name: str) -> str:
    """A checkpoint's BERT tensor name as `transformers.BertModel.state_dict()` spells it."""
    name = name.removeprefix("bert.")
    module, _, param = name.rpartition(".")
    return f"{module}.{ {'gamma': 'weight', 'beta': 'bias'}.get(param, param)}"


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """numpy's BLAS on one thread while it is entered. These matrices are small: OpenBLAS's
    threads gain little on them, and on a busy machine their spin-waits made one query's
    encoding 20-70 times slower (measured: 28 ms -> 0.4-2 s at load average 13)."""
    controller = _blas_controller()
    if controller is None:  # threadpoolctl is a core dependency; without it only speed differs
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")


@functools.lru_cache(maxsize=1)
def _blas_controller() -> Any:
    """The process's thread pools, found once: `threadpool_limits` looks for them on every
    call (~2 ms in a process that has loaded faiss, torch, duckdb and pyarrow)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


class Tokenizer:
    """BERT's fast tokenizer (the `tokenizers` library, no transformers): texts -> padded
    `input_ids`, `token_type_ids`, `attention_mask` (int64 numpy), truncated to `max_length`
    tokens as transformers' tokenizer does (special tokens included)."""

    def __init__(self, path: Path, max_length: int = MAX_TOKENS) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        self._tok = RustTokenizer.from_file(str(path))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length)
        self._lock = threading.Lock()  # encode_batch on one tokenizer is not re-entrant

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        with self._lock:
            encs = self._tok.encode_batch(list(texts))
        width = max((len(e.ids) for e in encs), default=0)

        def pad(rows: list[list[int]]) -> np.ndarray:
            return np.array([r + [0] * (width - len(r)) for r in rows], dtype=np.int64)

        return {"input_ids": pad([e.ids for e in encs]),
                "token_type_ids": pad([e.type_ids for e in encs]),
                "attention_mask": pad([e.attention_mask for e in encs])}


_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def mapped_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file as read-only arrays over a memory map of it.

    Only the pages a forward pass touches are read (of the 47 MB word-embedding table, the
    rows of the query's tokens), where `safetensors.numpy.load_file` copies all 90 MB.
    """
    import mmap

    header, start = safetensors_header(path)
    with open(path, "rb") as f:
        buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _DTYPES:
            raise MmsearchError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        begin, end = info["data_offsets"]
        count = (end - begin) // dtype.itemsize
        out[name] = np.frombuffer(buffer, dtype, count, start + begin).reshape(info["shape"])
    return out


class NumpyBert:
    """MiniLM's forward pass (post-LayerNorm BERT): token ids -> hidden states by layer.

    Args:
        folder: the tower's folder (``config.json``, ``model.safetensors``).
        replace: retrained tensors by `BertModel` name that replace the checkpoint's
            (each must exist with the same shape).
    """

    def __init__(self, folder: Path, replace: dict[str, np.ndarray] | None = None) -> None:
        import json

        self.config = json.loads((folder / "config.json").read_text())
        if self.config.get("hidden_act", "gelu") != "gelu" or \
                self.config.get("position_embedding_type", "absolute") != "absolute":
            raise MmsearchError(f"{folder}: only BERT with GELU and absolute positions runs "
                                "in numpy")
        weights = mapped_safetensors(folder / "model.safetensors")
        self.w = {bert_key(k): v for k, v in weights.items()}
        for name, value in (replace or {}).items():
            own = self.w.get(name)
            if own is None or own.shape != value.shape:
                raise MmsearchError(f"retrained text tower tensor {name} does not fit")
            self.w[name] = value
        self.w = {k: v.astype(np.float32, copy=False) for k, v in self.w.items()}
        self.eps = float(self.config["layer_norm_eps"])
        self.heads = int(self.config["num_attention_heads"])
        self.layers = int(self.config["num_hidden_layers"])
        self.width = int(self.config["hidden_size"])

    def __call__(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray,
                 layers: Sequence[int]) -> dict[int, np.ndarray]:
        """(N, L) inputs -> {layer: (N, L, width) float32} for each of `layers` (0: the
        embeddings' output, `self.layers`: the last)."""
        bad = [n for n in layers if not 0 <= n <= self.layers]
        if bad:
            raise MmsearchError(f"the text tower has layers 0..{self.layers}, not {bad}")
        w, eps = self.w, self.eps
        n, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:length][None]
             + w["embeddings.token_type_embeddings.weight"][types])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        out = {0: x} if 0 in layers else {}
        bias = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min
                        ).astype(np.float32)
        hd = self.width // self.heads

        def split(t: np.ndarray) -> np.ndarray:
            return t.reshape(n, length, self.heads, hd).transpose(0, 2, 1, 3)

        for i in range(max(layers)):
            p = f"encoder.layer.{i}"
            q, k, v = (split(_linear(x, w, f"{p}.attention.self.{m}"))
                       for m in ("query", "key", "value"))
            att = _softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + bias, -1) @ v
            att = att.transpose(0, 2, 1, 3).reshape(n, length, self.width)
            x = _layer_norm(x + _linear(att, w, f"{p}.attention.output.dense"),
                            w[f"{p}.attention.output.LayerNorm.weight"],
                            w[f"{p}.attention.output.LayerNorm.bias"], eps)
            h = _linear(gelu(_linear(x, w, f"{p}.intermediate.dense")), w, f"{p}.output.dense")
            x = _layer_norm(x + h, w[f"{p}.output.LayerNorm.weight"],
                            w[f"{p}.output.LayerNorm.bias"], eps)
            if i + 1 in layers:
                out[i + 1] = x
        return out


class NumpyTextHead:
    """The text projection head of `LiteHeads`: mean pool (+ attention pool with any number
    of heads) -> linear -> residual MLP blocks; reads ``text.*`` of a heads file."""

    def __init__(self, config: dict[str, Any], w: dict[str, np.ndarray]) -> None:
        self.w = w
        self.blocks = int(config["text_blocks"])
        self.pool_heads = int(config["text_pool_heads"])
        self.layers = [int(n) for n in config.get("text_layers", [6])]

    def __call__(self, layers: dict[int, np.ndarray], mask: np.ndarray) -> np.ndarray:
        """Token states by layer ((N, L, width) each) and the (N, L) mask -> (N, dim)."""
        w = self.w
        tokens = np.concatenate([layers[n] for n in self.layers], axis=-1)
        m = mask[..., None].astype(np.float32)
        x = (tokens * m).sum(1) / np.maximum(m.sum(1), 1.0)
        if self.pool_heads:
            s = _linear(_layer_norm(tokens, w["pool.norm.weight"], w["pool.norm.bias"],
                                    _HEAD_EPS), w, "pool.score")
            a = _softmax(np.where(mask[..., None] > 0, s, -np.inf), 1)
            pooled = np.einsum("nlh,nlc->nhc", a, tokens).reshape(len(x), -1)
            x = np.concatenate([x, pooled], axis=-1)
        x = _linear(x, w, "inp")
        for i in range(self.blocks):
            b = f"blocks.{i}"
            h = _layer_norm(x, w[f"{b}.0.weight"], w[f"{b}.0.bias"], _HEAD_EPS)
            x = x + _linear(gelu(_linear(h, w, f"{b}.1")), w, f"{b}.4")
        return x


class NumpyTextSide:
    """Tokenizer, MiniLM and text head of one heads file: texts -> (N, dim) unit rows."""

    def __init__(self, heads_path: Path, config: dict[str, Any]) -> None:
        from safetensors import safe_open

        text: dict[str, np.ndarray] = {}
        tower: dict[str, np.ndarray] = {}
        with safe_open(str(heads_path), framework="numpy") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                if key.startswith("text."):
                    text[key[len("text."):]] = f.get_tensor(key).astype(np.float32)
                elif key.startswith("tower.text."):
                    tower[key[len("tower.text."):]] = f.get_tensor(key).astype(np.float32)
        folder = text_tower_dir()
        self.tokenizer = Tokenizer(folder / "tokenizer.json")
        self.bert = NumpyBert(folder, dequantized(tower))
        self.head = NumpyTextHead(config, dequantized(text))

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        batch = self.tokenizer(texts)
        mask = batch["attention_mask"]
        with one_blas_thread():
            layers = self.bert(batch["input_ids"], batch["token_type_ids"], mask,
                               self.head.layers)
            v = self.head(layers, mask).astype(np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


class LiteLazy(Encoder):
    """An mmsearch-lite model as the engine sees it: small text batches in numpy (no torch),
    the torch encoder (`lite.LiteEncoder`, both towers) built on first need of images or
    large text batches. Attributes it lacks are the torch encoder's.

    Args:
        device: "cpu", "cuda", ... for the torch encoder (None: CUDA when available).
        heads_path: a heads file (None: the shipped heads of `spec`).
        spec: which shipped generation (``mmsearch-lite-4``, ``mmsearch-lite-3``, ...).
    """

    image_size = IMAGE_SIZE

    def __init__(self, device: str | None = None, heads_path: str | Path | None = None,
                 spec: str = LATEST) -> None:
        self._device = device
        self._heads_arg = heads_path
        self._heads_path = heads_file(spec, heads_path)
        self._config = head_config(self._heads_path)
        if heads_path is None and self._config["spec"] != spec:
            raise MmsearchError(f"{self._heads_path} holds {self._config['spec']!r} heads, "
                                f"not {spec!r}")
        self.spec = str(self._config["spec"])
        self.dim = int(self._config["dim"])
        self._full: Any = None
        self._text: NumpyTextSide | None = None
        self._lock = threading.Lock()

    @property
    def full(self) -> Any:
        """The torch encoder (both towers), loaded on first use."""
        if self._full is None:
            with self._lock:
                if self._full is None:
                    from mmsearch.encoders.lite import LiteEncoder

                    self._full = LiteEncoder(self._device, self._heads_arg, self.spec)
        return self._full

    @property
    def device(self) -> str:  # type: ignore[override]
        """The torch encoder's device once loaded; before, the one asked for."""
        if self._full is not None:
            return str(self._full.device)
        return self._device if self._device and self._device != "auto" else "cpu"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "full":
            raise AttributeError(name)
        return getattr(self.full, name)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """RGB PIL image -> the torch encoder's (3, 260, 260) input (imports torch)."""
        from mmsearch.encoders.lite import preprocess_image

        return preprocess_image(image)

    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        """(N, 3, H, W) preprocessed images -> (N, dim) float32 unit rows (torch encoder)."""
        return self.full.encode_images(pixels)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dim) float32 unit rows: numpy for small batches until the torch
        encoder is loaded anyway, then the torch encoder."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) > NUMPY_MAX_TEXTS or self._full is not None:
            return self.full.encode_texts(texts)
        return self.text_side()(texts)

    def text_side(self) -> NumpyTextSide:
        """The numpy text side, loaded on first use."""
        if self._text is None:
            with self._lock:
                if self._text is None:
                    self._text = NumpyTextSide(self._heads_path, self._config)
        return self._text


__all__ = ["NUMPY_MAX_TEXTS", "LiteLazy", "NumpyBert", "NumpyTextHead", "NumpyTextSide",
           "gelu"]
