"""A BERT encoder (all-MiniLM-L6-v2) in plain PyTorch, with the `tokenizers` library.

The query path of mmsearch-lite needs only the text tower; importing transformers for it
cost seconds of a cold start. This module reads the same `config.json`,
`model.safetensors` and `tokenizer.json` and computes the same hidden states as
transformers' `BertModel` (tests/unit/test_lite_model.py compares them).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmsearch.encoders.bert_tokens import FastTokenizer, bert_weight_name


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


def load_minibert(folder: Path) -> tuple[FastTokenizer, MiniBert]:
    """Tokenizer and encoder from a sentence-transformers / transformers BERT folder."""
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    model = MiniBert(config)
    weights = {}
    for name, tensor in load_file(str(folder / "model.safetensors")).items():
        ours = bert_weight_name(name)
        if ours is not None:
            weights[ours] = tensor
    model.load_state_dict(weights, strict=True)
    return FastTokenizer(folder / "tokenizer.json"), model
