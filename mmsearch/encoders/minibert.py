"""A BERT encoder (all-MiniLM-L6-v2) in plain PyTorch, with the `tokenizers` library.

The query path of mmsearch-lite needs only the text tower; importing transformers for it
cost seconds of a cold start. This module reads the same `config.json`,
`model.safetensors` and `tokenizer.json` and computes the same hidden states as
transformers' `BertModel` (tests/unit/test_lite_model.py compares them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class FastTokenizer:
    """Callable like a transformers fast tokenizer for what mmsearch uses: a list of texts
    in, padded `input_ids`, `token_type_ids`, `attention_mask` tensors out."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_padding()
        self._tok.no_truncation()

    def __call__(self, texts: Sequence[str], padding: bool = True, truncation: bool = True,
                 max_length: int = 512, return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        tok = self._tok
        if truncation:
            tok.enable_truncation(max_length)
        encs = tok.encode_batch(list(texts))
        width = max((len(e.ids) for e in encs), default=0)

        def pad(rows: list[list[int]]) -> torch.Tensor:
            return torch.tensor([r + [0] * (width - len(r)) for r in rows], dtype=torch.long)

        return {"input_ids": pad([e.ids for e in encs]),
                "token_type_ids": pad([e.type_ids for e in encs]),
                "attention_mask": pad([e.attention_mask for e in encs])}


class _Layer(nn.Module):
    def __init__(self, width: int, inner: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.attn_out = nn.Linear(width, width)
        self.attn_norm = nn.LayerNorm(width, eps=eps)
        self.inner = nn.Linear(width, inner)
        self.out = nn.Linear(inner, width)
        self.out_norm = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, length, width = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, length, self.heads, width // self.heads).transpose(1, 2)

        att = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)),
                                             split(self.value(x)), attn_mask=bias)
        x = self.attn_norm(x + self.attn_out(att.transpose(1, 2).reshape(n, length, width)))
        return self.out_norm(x + self.out(F.gelu(self.inner(x))))


class MiniBert(nn.Module):
    """BERT without pooler: `model(input_ids=..., token_type_ids=..., attention_mask=...)
    .last_hidden_state` as in transformers."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        width, eps = int(config["hidden_size"]), float(config["layer_norm_eps"])
        self.word = nn.Embedding(int(config["vocab_size"]), width)
        self.position = nn.Embedding(int(config["max_position_embeddings"]), width)
        self.token_type = nn.Embedding(int(config["type_vocab_size"]), width)
        self.norm = nn.LayerNorm(width, eps=eps)
        self.layers = nn.ModuleList(
            _Layer(width, int(config["intermediate_size"]), int(config["num_attention_heads"]),
                   eps) for _ in range(int(config["num_hidden_layers"])))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> SimpleNamespace:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
        x = self.norm(self.word(input_ids) + self.position(positions)[None]
                      + self.token_type(types))
        bias = torch.zeros(attention_mask.shape, dtype=x.dtype, device=x.device)
        bias = bias.masked_fill(attention_mask == 0, torch.finfo(x.dtype).min)[:, None, None]
        for layer in self.layers:
            x = layer(x, bias)
        return SimpleNamespace(last_hidden_state=x)


#: transformers' BertModel parameter names -> ours (per layer: "encoder.layer.N." prefix).
_NAMES = {"embeddings.word_embeddings": "word", "embeddings.position_embeddings": "position",
          "embeddings.token_type_embeddings": "token_type", "embeddings.LayerNorm": "norm"}
_LAYER_NAMES = {"attention.self.query": "query", "attention.self.key": "key",
                "attention.self.value": "value", "attention.output.dense": "attn_out",
                "attention.output.LayerNorm": "attn_norm", "intermediate.dense": "inner",
                "output.dense": "out", "output.LayerNorm": "out_norm"}


def _our_name(name: str) -> str | None:
    name = name.removeprefix("bert.")
    module, _, param = name.rpartition(".")
    param = {"gamma": "weight", "beta": "bias"}.get(param, param)
    if module in _NAMES:
        return f"{_NAMES[module]}.{param}"
    if module.startswith("encoder.layer."):
        index, _, rest = module[len("encoder.layer."):].partition(".")
        if rest in _LAYER_NAMES:
            return f"layers.{index}.{_LAYER_NAMES[rest]}.{param}"
    return None  # the pooler and position ids are not used


def load_minibert(folder: Path) -> tuple[FastTokenizer, MiniBert]:
    """Tokenizer and encoder from a sentence-transformers / transformers BERT folder."""
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    model = MiniBert(config)
    weights = {}
    for name, tensor in load_file(str(folder / "model.safetensors")).items():
        ours = _our_name(name)
        if ours is not None:
            weights[ours] = tensor
    model.load_state_dict(weights, strict=True)
    return FastTokenizer(folder / "tokenizer.json"), model
